// Layer tar → directory. Over ~400 lines because the hot path (small files written
// synchronously, a parent-directory cache) and the safety rules (the one resolver, the layer
// rules, overlay-form whiteouts) meet here entry by entry; splitting them would cost a pass.
import { execFile } from 'node:child_process';
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lstatSync,
  openSync,
  writeSync,
} from 'node:fs';
import { chmod, lchown, link, lutimes, mkdir, open, readdir, rm, symlink, utimes } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { runOverlayHelper, type HelperOp } from './overlay-helper.js';
import { StratumError, errnoCode } from '../errors.js';
import { decompressedStream } from '../oci/compression.js';
import { LayerWrites, childPath, classifyEntry, replacesExisting, whiteoutEffect } from './layer-rules.js';
import { lookupOnDisk, resolveWithAsync, type Lookup } from './resolve.js';

const run = promisify(execFile);

/** tar-stream's entry body: a streamx Readable, consumed by async iteration. */
type EntryBody = AsyncIterable<Uint8Array> & { resume(): unknown };

async function writeBody(body: EntryBody, path: string): Promise<void> {
  const handle = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    for await (const chunk of body) await handle.write(chunk);
  } finally {
    await handle.close();
  }
}

/**
 * Files up to this size are written with synchronous calls on one descriptor (open, write,
 * fchown, fchmod, futimes, close). Each async fs call is a round trip through the thread pool;
 * for the thousands of small files of a typical layer that made extraction 3-4x slower than
 * GNU tar. A small file's write is short enough not to hold up the event loop.
 */
const SMALL_FILE = 256 * 1024;

async function writeSmallFile(
  body: EntryBody,
  path: string,
  owner: { uid: number; gid: number; isRoot: boolean },
  mode: number,
  mtime: Date,
): Promise<void> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    for (const chunk of chunks) writeSync(fd, chunk);
    try {
      fchownSync(fd, owner.uid, owner.gid);
    } catch (error) {
      if (owner.isRoot) throw error;
    }
    // After chown: chown clears setuid/setgid, so the mode goes on last.
    fchmodSync(fd, mode);
    futimesSync(fd, mtime, mtime);
  } finally {
    closeSync(fd);
  }
}

export interface ExtractOptions {
  /** names the layer in errors, e.g. its digest or file name */
  readonly layerName?: string;
  readonly signal?: AbortSignal;
  /** called for entries that are skipped (device nodes when not root, unknown types) */
  readonly onWarning?: (message: string) => void;
  /**
   * Extract into an empty directory in overlayfs's own form instead of applying whiteouts:
   * a whiteout becomes a character device 0/0 and an opaque whiteout the xattr named here on
   * its directory (`trusted.overlay.opaque`, or `user.overlay.opaque` in a user namespace), so
   * the directory can be stacked as an overlay lowerdir unchanged (containerd's overlay applier).
   */
  readonly overlayOpaqueXattr?: string;
  /**
   * Rootless: gives entries the owners this process may not (a subordinate id range's), as root
   * of the build's user namespace does (`chown` helper operations, one batch at the end). Without
   * it such entries stay ours.
   */
  readonly giveOwners?: (ops: readonly HelperOp[]) => Promise<unknown>;
}

export interface ExtractResult {
  readonly entries: number;
  readonly warnings: readonly string[];
  /** With overlayOpaqueXattr: the directories marked opaque (relative paths). */
  readonly opaqueDirs?: readonly string[];
}

interface DeferredDir {
  readonly path: string;
  readonly mode: number;
  readonly mtime: Date;
  readonly depth: number;
}

/**
 * Applies one layer (an uncompressed tar stream) onto `target`, Docker's way: whiteouts and opaque
 * whiteouts remove only what lower layers put there (wherever they sit in the tar), an entry of a
 * different type replaces what is there, directories merge. It never writes outside `target`:
 * every parent directory is resolved inside it with chroot semantics (an absolute symlink is
 * relative to `target`), and names or links that would leave it are refused with UNSAFE_PATH.
 */
export async function extractLayer(
  input: Readable,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const layer = options.layerName ?? 'layer';
  const root = target.replace(/\/+$/, '') || '/';
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  const isRoot = process.getuid?.() === 0;
  const writes = new LayerWrites();
  const deferred: DeferredDir[] = [];
  let resolved = new Map<string, string>();
  let count = 0;
  const overlayForm = options.overlayOpaqueXattr !== undefined;
  /** Overlay form: whiteouts and opaque directories, made in one helper call at the end. */
  const overlayWhiteouts = new Set<string>();
  const overlayOpaque = new Set<string>();

  // Without root, owners other than our own cannot be set: the files stay ours (a rootless
  // build maps them back through its user namespace), rather than failing the extraction;
  // with `giveOwners`, the namespace's root gives them at the end (mode -1: leave it).
  const ownerOps: HelperOp[] = [];
  const setOwner = async (path: string, uid: number, gid: number, mode = -1): Promise<void> => {
    try {
      await lchown(path, uid, gid);
    } catch (error) {
      if (isRoot) throw error;
      if (options.giveOwners !== undefined) ownerOps.push({ op: 'chown', path, uid, gid, mode });
    }
  };
  const abs = (stack: readonly string[]): string =>
    stack.length === 0 ? root : `${root}/${stack.join('/')}`;
  /** In-root path of a host path below the root ('' is the root). */
  const inRoot = (host: string): string => (host === root ? '' : host.slice(root.length + 1));

  /**
   * Resolves directory components to a real directory inside the root with the one resolver
   * (resolve.ts): chroot semantics, and a link climbing above the root is refused (UNSAFE_PATH),
   * as analyze's model does. With `create`, missing directories are made (0755, as Docker does).
   */
  async function resolveDir(
    parts: readonly string[],
    create: boolean,
    what: string,
  ): Promise<string | undefined> {
    const key = parts.join('/');
    const cached = resolved.get(key);
    if (cached !== undefined) return cached;
    const lookup = async (at: readonly string[]): Promise<Lookup> => {
      const found = await lookupOnDisk(root, at);
      if (found.kind !== 'missing' || !create) return found;
      await mkdir(abs(at), { mode: 0o755 });
      return { kind: 'dir' };
    };
    const result = await resolveWithAsync(key, lookup, {
      followLast: true,
      atRoot: 'refuse',
      directory: true,
      what,
    });
    if (result.notDirectory !== undefined) {
      throw new StratumError('INVALID_IMAGE', `${what}: parent ${result.notDirectory} is not a directory`);
    }
    if (result.existing < result.parts.length) return undefined;
    const stack = result.parts;
    const real = abs(stack);
    resolved.set(key, real);
    return real;
  }

  /** Records that this layer wrote `path` (a host path), and so every directory above it. */
  const markWritten = (path: string): void => {
    writes.add(inRoot(path));
  };

  /** Anything removed or turned into a symlink may change how later parents resolve. */
  const invalidate = (): void => {
    resolved = new Map();
  };

  /** Removes everything under `dir` that this layer did not write: an opaque whiteout. */
  async function prune(dir: string): Promise<void> {
    let children;
    try {
      children = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return;
      throw error;
    }
    for (const child of children) {
      const path = `${dir}/${child.name}`;
      if (!writes.has(inRoot(path))) {
        await rm(path, { recursive: true, force: true });
        invalidate();
      } else if (child.isDirectory()) {
        await prune(path);
      }
    }
  }

  async function applyEntry(header: tar.Header, body: EntryBody): Promise<void> {
    const what = `${layer}: entry "${header.name}"`;
    const entry = classifyEntry(header.name, what);
    if (entry.kind === 'root' || entry.kind === 'meta') {
      body.resume();
      return; // the root's metadata belongs to whoever owns the target; aufs bookkeeping is not applied
    }

    if (entry.kind === 'opaque') {
      body.resume();
      if (overlayForm) {
        overlayOpaque.add((await resolveDir(entry.parent, true, what))!);
        return;
      }
      const dir = await resolveDir(entry.parent, false, what);
      if (dir !== undefined) await prune(dir);
      return;
    }
    if (entry.kind === 'whiteout') {
      body.resume();
      if (overlayForm) {
        overlayWhiteouts.add(`${(await resolveDir(entry.parent, true, what))!}/${entry.victim}`);
        return;
      }
      const dir = await resolveDir(entry.parent, false, what);
      if (dir === undefined) return;
      const path = `${dir}/${entry.victim}`;
      let info;
      try {
        info = lstatSync(path);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT') throw error;
        return;
      }
      const effect = whiteoutEffect(writes.has(childPath(inRoot(dir), entry.victim)), info.isDirectory());
      if (effect === 'prune') await prune(path);
      else if (effect === 'remove') {
        await rm(path, { recursive: true, force: true });
        invalidate();
      }
      return;
    }

    const parentParts = entry.parent;
    const parts = [...parentParts, entry.name];
    const base = entry.name;
    const dir = (await resolveDir(parentParts, true, what))!;
    const path = `${dir}/${base}`;
    const type: string = header.type;
    const mode = header.mode & 0o7777;
    // tar-stream applies PAX path, linkpath and size but not uid/gid (used for ids > 2097151).
    const pax = header.pax as Record<string, string> | null | undefined;
    const uid = pax?.uid !== undefined ? Number(pax.uid) : header.uid;
    const gid = pax?.gid !== undefined ? Number(pax.gid) : header.gid;
    const mtime = header.mtime;
    // tar-stream's types say string/number, but a header without them decodes as null.
    const linkname = (header.linkname as string | null) ?? '';
    const devMajor = (header.devmajor as number | null) ?? 0;
    const devMinor = (header.devminor as number | null) ?? 0;

    let existing;
    try {
      existing = lstatSync(path);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
    if (
      existing !== undefined &&
      replacesExisting(existing.isDirectory() ? 'dir' : 'other', type === 'directory')
    ) {
      await rm(path, { recursive: true, force: true });
      invalidate();
    }

    switch (type) {
      case 'directory':
        body.resume();
        if (existing === undefined || !existing.isDirectory()) await mkdir(path, { mode: 0o700 });
        await setOwner(path, uid, gid);
        deferred.push({ path, mode, mtime, depth: parts.length });
        markWritten(path);
        return;
      case 'file':
      case 'contiguous-file':
        if (((header.size as number | null | undefined) ?? Infinity) <= SMALL_FILE) {
          await writeSmallFile(body, path, { uid, gid, isRoot }, mode, mtime);
          if (!isRoot && options.giveOwners !== undefined) await setOwner(path, uid, gid, mode);
          markWritten(path);
          return;
        }
        await writeBody(body, path);
        break;
      case 'symlink':
        body.resume();
        await symlink(linkname, path);
        invalidate();
        markWritten(path);
        await setOwner(path, uid, gid);
        await lutimes(path, mtime, mtime);
        return;
      case 'link': {
        body.resume();
        const linkEntry = classifyEntry(linkname.replace(/^\/+/, ''), `${what} (link target)`);
        if (linkEntry.kind !== 'entry')
          throw new StratumError('UNSAFE_PATH', `${what}: hard link to "${linkname}" refused`);
        const linkParts = [...linkEntry.parent, linkEntry.name];
        const linkDir = await resolveDir(linkParts.slice(0, -1), false, `${what} (link target)`);
        const source = linkDir === undefined ? undefined : `${linkDir}/${linkParts[linkParts.length - 1]!}`;
        if (source === undefined) {
          throw new StratumError('INVALID_IMAGE', `${what}: hard link target "${linkname}" does not exist`);
        }
        try {
          await link(source, path);
        } catch (error) {
          throw new StratumError(
            'INVALID_IMAGE',
            `${what}: hard link to "${linkname}" failed: ${errnoCode(error) ?? String(error)}`,
            { cause: error },
          );
        }
        // The inode's owner, mode and times come from the entry that created it.
        markWritten(path);
        return;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        body.resume();
        if (type !== 'fifo' && !isRoot) {
          warn(`${what}: device node skipped (needs root)`);
          return;
        }
        try {
          if (type === 'fifo') await run('mkfifo', ['-m', '600', path]);
          else {
            const kind = type === 'character-device' ? 'c' : 'b';
            await run('mknod', ['-m', '600', path, kind, String(devMajor), String(devMinor)]);
          }
        } catch (error) {
          warn(
            `${what}: ${type} skipped (${error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)})`,
          );
          return;
        }
        break;
      }
      default:
        body.resume();
        warn(`${what}: unsupported entry type skipped`);
        return;
    }
    markWritten(path);
    await setOwner(path, uid, gid, mode);
    // After chown: chown clears setuid/setgid, so the mode goes on last.
    await chmod(path, mode);
    await utimes(path, mtime, mtime);
  }

  const extract = tar.extract();
  const feeding = pipeline(input, extract, options.signal ? { signal: options.signal } : {});
  feeding.catch(() => undefined);
  try {
    for await (const entry of extract) {
      if (options.signal?.aborted === true) throw new StratumError('ABORTED', `${layer}: extraction aborted`);
      count++;
      await applyEntry(entry.header, entry as unknown as EntryBody);
    }
    await feeding;
  } catch (error) {
    extract.destroy();
    if (error instanceof StratumError) throw error;
    const detail = error instanceof Error ? error.message : String(error);
    throw new StratumError('INVALID_IMAGE', `${layer}: ${detail}`, { cause: error });
  }

  let opaqueDirs: string[] | undefined;
  if (overlayForm)
    opaqueDirs = await writeOverlayWhiteouts(
      root,
      overlayWhiteouts,
      overlayOpaque,
      options.overlayOpaqueXattr,
    );

  // Directories last and deepest first: writing their children changed their mtimes, and a
  // read-only directory mode would have blocked those writes for a non-root user.
  deferred.sort((a, b) => b.depth - a.depth);
  for (const dir of deferred) {
    await chmod(dir.path, dir.mode);
    await utimes(dir.path, dir.mtime, dir.mtime);
  }
  // Last: once a directory is another id's, this process may no longer write into it.
  if (ownerOps.length > 0) await options.giveOwners?.(ownerOps);
  return opaqueDirs === undefined ? { entries: count, warnings } : { entries: count, warnings, opaqueDirs };
}

/**
 * Overlay form, once the entries are written: a whiteout of a path this layer also wrote hides
 * only the lower content (a directory becomes opaque, anything else hides it by itself); other
 * whiteouts become 0/0 character devices. One helper process for the whole layer.
 */
async function writeOverlayWhiteouts(
  root: string,
  whiteouts: ReadonlySet<string>,
  opaque: ReadonlySet<string>,
  xattr: string,
): Promise<string[]> {
  const dirs = new Set(opaque);
  const ops: HelperOp[] = [];
  for (const path of whiteouts) {
    let info;
    try {
      info = lstatSync(path);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
    if (info === undefined) ops.push({ op: 'wh', path });
    else if (info.isDirectory()) dirs.add(path);
  }
  for (const path of dirs) ops.push({ op: 'opq', path, name: xattr });
  await runOverlayHelper(ops);
  return [...dirs].map((dir) => (dir === root ? '' : dir.slice(root.length + 1))).sort();
}

/**
 * Extracts a layer that may be gzip- or zstd-compressed, telling them apart by their magic
 * bytes (oci/compression.ts); zstd where this Node.js has none is UNSUPPORTED, not a garbled tar.
 */
export async function extractLayerAuto(
  input: Readable,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const { stream } = await decompressedStream(input, `layer ${options.layerName ?? ''}`.trimEnd());
  // A corrupt stream surfaces in extractLayer, which names the layer (INVALID_IMAGE).
  return extractLayer(stream, target, options);
}
