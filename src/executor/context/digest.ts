import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  fstatSync,
  openSync,
  readSync,
  statSync,
  type BigIntStats,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { errnoCode } from '../../errors.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { fsPath, isPlainName, nameBytes } from '../../util/file-names.js';
import { DigestingStream } from '../../oci/digest.js';
import type { Digest } from '../../oci/types.js';
import { applyChmod, parseChmod } from './chmod.js';
import type { HeldContents } from './held-contents.js';
import type { CopyPlan, EntryType, Owner } from './types.js';

/**
 * The content digest of exactly what a COPY/ADD selected, for the cache key: relative names,
 * types, modes and owners as they will be written (after --chmod/--chown), link targets,
 * hard-link groups and file content; never mtimes. Every field is length-framed, so no two
 * different selections can produce the same byte stream (kaniko's joined keys collided).
 */

interface StatRecord {
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
  readonly digest: Digest;
  /** When the content was read; a file changed too close to that moment is not trusted. */
  readonly hashedAtMs: number;
}

interface StatCacheFile {
  readonly version: 1;
  readonly entries: Record<string, StatRecord>;
}

/**
 * Timestamps advance in clock ticks (a few ms), so a file rewritten with the same size right
 * after it was hashed can keep its mtime and ctime. Entries whose ctime is this close to the
 * hashing moment are re-read next time (git's "racy clean" rule).
 */
const RACY_WINDOW_MS = 50;

/** Files hashed at once (large ones stream; small ones are read in one synchronous call). */
const DIGEST_CONCURRENCY = 4;
const SMALL_FILE = 256 * 1024;

/**
 * A stat cache: absolute path + (dev, ino, size, mtime ns, ctime ns) → content sha256, persisted
 * as JSON at a path the caller chooses (next to the cache index). A resource, so a class.
 */
export class StatCache {
  /** Files whose content was read (misses). */
  reads = 0;
  /** Files whose digest came from the cache. */
  hits = 0;
  private dirty = false;

  private constructor(
    readonly path: string | undefined,
    private readonly entries: Map<string, StatRecord>,
  ) {}

  /** Opens the cache at `path` (missing or unreadable file: starts empty); no path: in memory. */
  static async open(path?: string): Promise<StatCache> {
    const entries = new Map<string, StatRecord>();
    if (path !== undefined) {
      try {
        const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<StatCacheFile>;
        if (parsed.version === 1 && typeof parsed.entries === 'object') {
          for (const [key, record] of Object.entries(parsed.entries)) entries.set(key, record);
        }
      } catch (error) {
        // A missing or corrupt cache only costs re-reading; it is rebuilt on save.
        if (errnoCode(error) !== 'ENOENT' && !(error instanceof SyntaxError)) throw error;
      }
    }
    return new StatCache(path, entries);
  }

  /**
   * sha256 of a regular file's content, from the cache when its stat is unchanged. A small file
   * that is read is offered to `keep` (the copy after a miss writes those bytes).
   */
  async contentDigest(path: string, signal?: AbortSignal, keep?: HeldContents): Promise<Digest> {
    const cached = this.entries.get(path);
    if (cached !== undefined) {
      const st = statSync(fsPath(path), { bigint: true });
      if (
        cached.dev === st.dev.toString() &&
        cached.ino === st.ino.toString() &&
        cached.size === st.size.toString() &&
        cached.mtimeNs === st.mtimeNs.toString() &&
        cached.ctimeNs === st.ctimeNs.toString() &&
        Number(st.ctimeNs / 1_000_000n) < cached.hashedAtMs - RACY_WINDOW_MS
      ) {
        this.hits++;
        return cached.digest;
      }
    }
    const hashedAtMs = Date.now();
    // Opened first and stated through the descriptor: on a cold build (no record) that is one
    // system call less per file than a stat and then a read by path.
    let st: BigIntStats;
    let digest: Digest;
    const fd = openSync(fsPath(path), 'r');
    try {
      st = fstatSync(fd, { bigint: true });
      if (st.size <= SMALL_FILE) {
        // One synchronous read: for small files the async round trips cost more than the read.
        const data = readAll(fd, Number(st.size));
        digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
        keep?.offer(path, data);
      }
    } finally {
      closeSync(fd);
    }
    if (st.size > SMALL_FILE) {
      const digesting = new DigestingStream('sha256');
      await pipeline(createReadStream(fsPath(path)), digesting, async (source: AsyncIterable<Buffer>) => {
        for await (const _chunk of source) signal?.throwIfAborted();
      });
      digest = digesting.digest;
    }
    this.reads++;
    this.entries.set(path, {
      dev: st.dev.toString(),
      ino: st.ino.toString(),
      size: st.size.toString(),
      mtimeNs: st.mtimeNs.toString(),
      ctimeNs: st.ctimeNs.toString(),
      digest: digest!,
      hashedAtMs,
    });
    this.dirty = true;
    return digest!;
  }

  /** Writes the cache atomically (temp file + rename), when it has a path and changed. */
  async save(): Promise<void> {
    if (this.path === undefined || !this.dirty) return;
    const body: StatCacheFile = { version: 1, entries: Object.fromEntries(this.entries) };
    // Not flushed: after a crash of the machine a torn file reads as empty (see open()), an old
    // one still maps stats to the digests they had; either only costs re-reading files.
    await writeFileAtomic(this.path, JSON.stringify(body), { createParents: true, durable: false });
    this.dirty = false;
  }
}

export interface SourceFileDigest {
  readonly type: EntryType;
  /** Where it lands, relative to the destination. */
  readonly destRelPath: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly contentDigest?: Digest;
  readonly linkTarget?: string;
}

export interface SourcesDigest {
  readonly digest: Digest;
  /** Per entry, keyed by its source name (`src/app.js`, or the URL), to explain a cache miss. */
  readonly files: Readonly<Record<string, SourceFileDigest>>;
}

export interface DigestOptions {
  readonly statCache?: StatCache;
  readonly chown?: Owner;
  readonly chmod?: number | string;
  readonly signal?: AbortSignal;
  /** Where the small files read for the digest are kept for the copy (see HeldContents). */
  readonly keepContents?: HeldContents;
}

/** Reads up to `size` bytes (what fstat said; fewer if the file shrank meanwhile), as readFileSync. */
function readAll(fd: number, size: number): Buffer {
  const data = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const read = readSync(fd, data, filled, size - filled, null);
    if (read === 0) break;
    filled += read;
  }
  return filled === size ? data : data.subarray(0, filled);
}

/** One length field, reused: hash.update copies what it is given. */
const lengthField = Buffer.alloc(8);

function frame(hash: ReturnType<typeof createHash>, value: string): void {
  // A name's own bytes: as UTF-8, two names that are not UTF-8 would both be U+FFFD. A plain
  // name is its UTF-8 (the common case, hashed without a Buffer of its own).
  const bytes = isPlainName(value) ? undefined : nameBytes(value);
  const length = bytes === undefined ? Buffer.byteLength(value, 'utf8') : bytes.length;
  // A 64-bit big-endian length; names and fields are far below 4 GiB.
  lengthField.writeUInt32BE(Math.floor(length / 2 ** 32), 0);
  lengthField.writeUInt32BE(length % 2 ** 32, 4);
  hash.update(lengthField);
  if (bytes === undefined) hash.update(value, 'utf8');
  else hash.update(bytes);
}

/** Digests a plan's selection (see the module comment for what counts). */
export async function digestSources(plan: CopyPlan, options: DigestOptions = {}): Promise<SourcesDigest> {
  const cache = options.statCache ?? (await StatCache.open());
  const chmod = options.chmod === undefined ? undefined : parseChmod(options.chmod);
  const chown = options.chown;
  const hash = createHash('sha256');
  frame(hash, 'stratum copy sources v1');
  frame(hash, plan.singleFile ? 'single-file' : 'into-directory');
  frame(hash, String(plan.entries.length));
  const files: Record<string, SourceFileDigest> = {};
  const linkGroups = new Map<string, number>();
  // Content first, a few files at a time (stat-cache hits cost one stat each).
  const contents = new Map<number, Digest>();
  let next = 0;
  const worker = async () => {
    while (next < plan.entries.length) {
      const index = next++;
      const entry = plan.entries[index]!;
      if (entry.type === 'file' || entry.type === 'archive') {
        contents.set(
          index,
          await cache.contentDigest(entry.sourcePath, options.signal, options.keepContents),
        );
      }
    }
  };
  await Promise.all(Array.from({ length: DIGEST_CONCURRENCY }, worker));
  for (const [index, entry] of plan.entries.entries()) {
    options.signal?.throwIfAborted();
    const isArchive = entry.type === 'archive';
    let mode = entry.mode;
    if (entry.type === 'symlink') mode = 0o777;
    else if (chmod !== undefined && !isArchive) mode = applyChmod(chmod, entry.mode, entry.type === 'dir');
    // Archive contents keep their own owners (the content digest covers them).
    const { uid, gid } = isArchive ? { uid: 0, gid: 0 } : (chown ?? entry.owner ?? { uid: 0, gid: 0 });
    const contentDigest = contents.get(index);
    let group = '';
    if (entry.hardLinkKey !== undefined) {
      let ordinal = linkGroups.get(entry.hardLinkKey);
      if (ordinal === undefined) {
        ordinal = linkGroups.size;
        linkGroups.set(entry.hardLinkKey, ordinal);
      }
      group = String(ordinal);
    }
    frame(hash, String(entry.sourceIndex));
    frame(hash, entry.sourceName);
    frame(hash, entry.destRelPath);
    frame(hash, entry.type);
    frame(hash, mode.toString(8));
    frame(hash, `${uid}:${gid}`);
    frame(hash, entry.linkTarget ?? '');
    frame(hash, group);
    frame(hash, contentDigest ?? '');
    files[entry.sourceName] = {
      type: entry.type,
      destRelPath: entry.destRelPath,
      mode,
      uid,
      gid,
      size: entry.size,
      ...(contentDigest !== undefined ? { contentDigest } : {}),
      ...(entry.linkTarget !== undefined ? { linkTarget: entry.linkTarget } : {}),
    };
  }
  if (options.statCache === undefined) await cache.save();
  return { digest: `sha256:${hash.digest('hex')}`, files };
}

/**
 * Plain-words differences between two selections, for `--explain`:
 * "src/app.js changed (content)", "src/new.js added", "old.js removed", "run.sh changed (mode 644 → 755)".
 */
export function explainSourceChanges(
  before: Readonly<Record<string, SourceFileDigest>>,
  after: Readonly<Record<string, SourceFileDigest>>,
  /**
   * What the instruction itself changed (its --chmod, its --chown): the recorded modes and owners
   * are those it gives, so their change is the instruction's, said once, not each file's.
   */
  fromInstruction: { readonly mode?: boolean; readonly owner?: boolean } = {},
): string[] {
  const out: string[] = [];
  for (const [name, now] of Object.entries(after)) {
    const was = before[name];
    if (was === undefined) {
      out.push(`${name} added`);
      continue;
    }
    const what: string[] = [];
    if (was.type !== now.type) what.push(`type ${was.type} → ${now.type}`);
    if (was.contentDigest !== now.contentDigest) what.push('content');
    if (was.mode !== now.mode && fromInstruction.mode !== true)
      what.push(`mode ${was.mode.toString(8)} → ${now.mode.toString(8)}`);
    if ((was.uid !== now.uid || was.gid !== now.gid) && fromInstruction.owner !== true)
      what.push(`owner ${was.uid}:${was.gid} → ${now.uid}:${now.gid}`);
    if (was.linkTarget !== now.linkTarget)
      what.push(`link target ${was.linkTarget ?? ''} → ${now.linkTarget ?? ''}`);
    if (was.destRelPath !== now.destRelPath) what.push(`destination ${was.destRelPath} → ${now.destRelPath}`);
    if (what.length > 0) out.push(`${name} changed (${what.join(', ')})`);
  }
  for (const name of Object.keys(before)) {
    if (!(name in after)) out.push(`${name} removed`);
  }
  return out;
}
