import type { Header as TarHeader } from 'tar-stream';
import { StratumError } from '../errors.js';
import { displayName } from '../util/file-names.js';
import { LayerWrites, childPath, classifyEntry, replacesExisting, whiteoutEffect } from './layer-rules.js';
import { resolveWith, type Lookup } from './resolve.js';

/**
 * The one layer-application driver: walks a layer's tar entries once and makes every decision of
 * the layer rules (layer-rules.ts): which entries apply, parent resolution with the one resolver
 * (`atRoot: 'refuse'`), what the layer wrote, what a whiteout or opaque marker removes, whether
 * an entry replaces what is there or merges into it, what a hard link points at. A target only
 * carries out the effects, on disk (extract.ts, plain or overlay form) or on analyze's model
 * (analyze/apply.ts). Paths given to a target are resolved in-root paths ('' is the root) with
 * no symlink among their parents.
 */

/** tar-stream's entry body: a streamx Readable, consumed by async iteration. */
export type EntryBody = AsyncIterable<Uint8Array> & { resume(): unknown };

/** Entry types a layer applies (named as analyze's model names them). */
export type LayerEntryType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo';

/** One entry to write, as plain data decoded from its tar header. */
export interface LayerEntry {
  /** Names the layer and the entry in errors and warnings. */
  readonly what: string;
  readonly type: LayerEntryType;
  /** Permission bits plus setuid, setgid and sticky (mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: Date;
  /** The size the header declares (undefined when it declares none). */
  readonly size: number | undefined;
  /** A symlink's target as written. */
  readonly linkTarget: string;
  readonly devMajor: number;
  readonly devMinor: number;
}

/** Overlay form: whiteouts are kept as overlayfs markers instead of removing lower content. */
export interface OverlayMarkers {
  /** Hide `path` of the lower layers (a 0/0 character device). */
  whiteout(path: string): void;
  /** Hide the lower layers' content under the directory `dir` (the opaque xattr). */
  markOpaque(dir: string): void;
}

/** The effects the driver asks of a target. Methods may be synchronous or return a promise. */
export interface LayerTarget {
  /** What is at an in-root path, its last component not followed. */
  lookup(path: string): Lookup;
  /** Makes a missing parent directory (root-owned 0755, as Docker's MkdirAll). */
  makeDir(path: string): void;
  /** Removes `path` and its subtree: whited out (`deleted`) or replaced by an entry. */
  remove(path: string, how: 'deleted' | 'replaced'): void | Promise<void>;
  /** Removes everything below the directory `dir` that `written` does not hold (opaque). */
  prune(dir: string, written: LayerWrites): void | Promise<void>;
  /**
   * Writes one entry at `path`, consuming `body`. Nothing of another type is there any more;
   * with `merge` a directory is there and this directory entry updates it. Returns false when
   * the target skipped the entry (a device node without root).
   */
  write(path: string, entry: LayerEntry, body: EntryBody, merge: boolean): boolean | Promise<boolean>;
  /** Makes `path` a hard link to `source`, an existing non-directory; nothing is at `path`. */
  link(
    path: string,
    source: string,
    entry: { readonly what: string; readonly linkname: string },
  ): void | Promise<void>;
  /** An entry the layer rules do not apply (unknown tar type). */
  warn(message: string): void;
  /** Present for overlay form. */
  readonly overlay?: OverlayMarkers;
}

export interface ApplyLayerOptions {
  /** Names the layer in errors, e.g. its digest. */
  readonly layerName: string;
  readonly signal?: AbortSignal;
}

export interface AppliedLayer {
  /** Tar members, whiteouts included. */
  readonly entries: number;
  /** Whiteouts, opaque markers and aufs bookkeeping entries. */
  readonly whiteouts: number;
}

/** tar-stream's header as it is at run time: fields can be null where the tar left them empty. */
interface RawHeader {
  readonly name: string;
  readonly type: TarHeader['type'] | null;
  readonly mode: number | null;
  readonly uid: number | null;
  readonly gid: number | null;
  readonly size: number | null;
  readonly mtime: Date | null;
  readonly linkname: string | null;
  readonly devmajor: number | null;
  readonly devminor: number | null;
  readonly pax: Record<string, string> | null | undefined;
}

const ENTRY_TYPES: Partial<Record<TarHeader['type'], LayerEntryType | 'link'>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  link: 'link',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/**
 * Applies one layer (tar-stream's entries of an uncompressed tar) to `target`. Docker's rules:
 * whiteouts and opaque markers remove only what lower layers put there (wherever they sit in the
 * tar), an entry of another type replaces what is there, directories merge.
 */
export async function applyLayer(
  entries: AsyncIterable<{ readonly header: TarHeader }>,
  target: LayerTarget,
  options: ApplyLayerOptions,
): Promise<AppliedLayer> {
  const driver = new LayerDriver(target, options.layerName);
  let count = 0;
  for await (const entry of entries) {
    if (options.signal?.aborted === true) throw new StratumError('ABORTED', `${options.layerName}: aborted`);
    count++;
    await driver.apply(entry.header as unknown as RawHeader, entry as unknown as EntryBody);
  }
  await driver.finishOverlay();
  return { entries: count, whiteouts: driver.whiteouts };
}

class LayerDriver {
  whiteouts = 0;
  private readonly writes = new LayerWrites();
  /** Resolved parent directories (fully existing ones only), keyed by their names in the tar. */
  private resolved = new Map<string, string>();
  /** Overlay form: whiteout paths and opaque directories, decided once the layer is written. */
  private readonly overlayWhiteouts = new Set<string>();
  private readonly overlayOpaque = new Set<string>();

  constructor(
    private readonly target: LayerTarget,
    private readonly layer: string,
  ) {}

  async apply(header: RawHeader, body: EntryBody): Promise<void> {
    const what = `${this.layer}: entry "${displayName(header.name)}"`;
    const entry = classifyEntry(header.name, what);
    switch (entry.kind) {
      case 'root': // the root's metadata belongs to whoever owns the target
        body.resume();
        return;
      case 'meta': // aufs bookkeeping is not applied
        body.resume();
        this.whiteouts++;
        return;
      case 'opaque':
        body.resume();
        this.whiteouts++;
        return this.opaque(entry.parent, what);
      case 'whiteout':
        body.resume();
        this.whiteouts++;
        return this.whiteout(entry.parent, entry.victim, what);
      case 'entry':
        return this.entry(header, body, entry.parent, entry.name, what);
    }
  }

  /** `.wh..wh..opq`: the lower content of its directory goes, this layer's stays. */
  private async opaque(parent: readonly string[], what: string): Promise<void> {
    const overlay = this.target.overlay !== undefined;
    const dir = this.resolveDir(parent, overlay, what);
    if (dir === undefined) return; // no such directory: nothing to hide
    if (overlay) {
      this.overlayOpaque.add(dir);
      return;
    }
    await this.target.prune(dir, this.writes);
    this.invalidate();
  }

  /** `.wh.NAME`: NAME goes with its subtree, unless this layer wrote it (then only lower content). */
  private async whiteout(parent: readonly string[], victim: string, what: string): Promise<void> {
    const overlay = this.target.overlay !== undefined;
    const dir = this.resolveDir(parent, overlay, what);
    if (dir === undefined) return; // below a missing path or a non-directory: nothing to remove
    const path = childPath(dir, victim);
    if (overlay) {
      this.overlayWhiteouts.add(path);
      return;
    }
    const found = this.target.lookup(path);
    if (found.kind === 'missing') return;
    const effect = whiteoutEffect(this.writes.has(path), found.kind === 'dir');
    if (effect === 'keep') return;
    if (effect === 'prune') await this.target.prune(path, this.writes);
    else await this.target.remove(path, 'deleted');
    this.invalidate();
  }

  private async entry(
    header: RawHeader,
    body: EntryBody,
    parent: readonly string[],
    name: string,
    what: string,
  ): Promise<void> {
    const type = header.type === null ? undefined : ENTRY_TYPES[header.type];
    if (type === undefined) {
      // GNU sparse files, volume labels and the like: nothing Docker applies.
      body.resume();
      this.target.warn(`${what}: unsupported entry type skipped`);
      return;
    }
    const path = childPath(this.resolveDir(parent, true, what, 'refuse')!, name);
    if (type === 'link') return this.hardLink(header, body, path, what);

    const merge = await this.clear(path, type === 'dir');
    // tar-stream applies PAX path, linkpath and size but not uid/gid (used for ids > 2097151).
    const pax = header.pax;
    const written = await this.target.write(
      path,
      {
        what,
        type,
        mode: (header.mode ?? 0) & 0o7777,
        uid: pax?.uid !== undefined ? Number(pax.uid) : (header.uid ?? 0),
        gid: pax?.gid !== undefined ? Number(pax.gid) : (header.gid ?? 0),
        mtime: header.mtime ?? new Date(0),
        size: header.size ?? undefined,
        linkTarget: header.linkname ?? '',
        devMajor: header.devmajor ?? 0,
        devMinor: header.devminor ?? 0,
      },
      body,
      merge,
    );
    if (type === 'symlink') this.invalidate(); // later parents may resolve through it
    if (written) this.writes.add(path);
  }

  /**
   * A hard link points at an existing non-directory, found with the same resolver (its parents
   * followed inside the root, its last component not) once what was at the link's path is gone,
   * as Docker removes it before linking. A link to itself changes nothing (`tar -cf x a a` writes
   * one).
   */
  private async hardLink(header: RawHeader, body: EntryBody, path: string, what: string): Promise<void> {
    body.resume();
    const linkname = header.linkname ?? '';
    const linkEntry = classifyEntry(linkname.replace(/^\/+/, ''), `${what} (link target)`);
    if (linkEntry.kind !== 'entry') {
      throw new StratumError('UNSAFE_PATH', `${what}: hard link to "${linkname}" refused`);
    }
    const sourceOf = (): { path: string | undefined; kind: Lookup['kind'] } => {
      const dir = this.resolveDir(linkEntry.parent, false, `${what} (link target)`);
      const source = dir === undefined ? undefined : childPath(dir, linkEntry.name);
      return { path: source, kind: source === undefined ? 'missing' : this.target.lookup(source).kind };
    };
    const before = sourceOf();
    if (before.path === path && before.kind !== 'missing' && before.kind !== 'dir') return;
    await this.clear(path, false);
    const source = sourceOf();
    if (source.path === undefined || source.kind === 'missing' || source.kind === 'dir') {
      throw new StratumError(
        'INVALID_IMAGE',
        `${this.layer}: hard link "${displayName(header.name)}" → "${displayName(linkname)}": ${source.kind === 'dir' ? 'target is a directory' : 'no such file'}`,
      );
    }
    await this.target.link(path, source.path, { what, linkname });
    if (source.kind === 'symlink') this.invalidate(); // a hard link to a symlink is a symlink
    this.writes.add(path);
  }

  /** Removes what is at `path` unless a directory entry merges into a directory; true to merge. */
  private async clear(path: string, incomingIsDir: boolean): Promise<boolean> {
    const existing = this.target.lookup(path);
    if (existing.kind === 'missing') return false;
    if (!replacesExisting(existing.kind === 'dir' ? 'dir' : 'other', incomingIsDir)) return true;
    await this.target.remove(path, 'replaced');
    this.invalidate();
    return false;
  }

  /**
   * Overlay form, once the entries are written: the whiteout rule decides each marker. A path
   * this layer also wrote keeps it, hiding only the lower content (a directory becomes opaque,
   * anything else hides it by itself); any other whiteout becomes a 0/0 character device.
   */
  async finishOverlay(): Promise<void> {
    const overlay = this.target.overlay;
    if (overlay === undefined) return;
    const opaque = new Set(this.overlayOpaque);
    for (const path of this.overlayWhiteouts) {
      const found = this.target.lookup(path);
      const effect =
        found.kind === 'missing' ? 'remove' : whiteoutEffect(this.writes.has(path), found.kind === 'dir');
      if (effect === 'prune') opaque.add(path);
      else if (effect === 'remove') {
        // Overlay form starts from an empty directory, so what is there is this layer's; should
        // something else be there, it goes, as the whiteout removes it in plain form.
        if (found.kind !== 'missing') await this.target.remove(path, 'deleted');
        overlay.whiteout(path);
      }
    }
    for (const dir of opaque) overlay.markOpaque(dir);
  }

  /**
   * Resolves a directory's components (as named in the tar) to a real directory inside the root
   * with the one resolver: chroot semantics, a link climbing above the root is refused
   * (UNSAFE_PATH). With `create`, missing directories are made (and count as written by this
   * layer). Undefined when the directory does not exist (without `create`) or a non-directory is
   * on the way, which is INVALID_IMAGE with `notDirectory: 'refuse'` (an entry's parents).
   */
  private resolveDir(
    parts: readonly string[],
    create: boolean,
    what: string,
    notDirectory: 'refuse' | 'none' = 'none',
  ): string | undefined {
    if (parts.length === 0) return '';
    const key = parts.join('/');
    const cached = this.resolved.get(key);
    if (cached !== undefined) return cached;
    const lookup = (at: readonly string[]): Lookup => {
      const path = at.join('/');
      const found = this.target.lookup(path);
      if (found.kind !== 'missing' || !create) return found;
      this.target.makeDir(path);
      this.writes.add(path);
      return { kind: 'dir' };
    };
    const result = resolveWith(key, lookup, { followLast: true, atRoot: 'refuse', directory: true, what });
    if (result.notDirectory !== undefined) {
      if (notDirectory === 'none') return undefined;
      throw new StratumError('INVALID_IMAGE', `${what}: parent ${result.notDirectory} is not a directory`);
    }
    if (result.existing < result.parts.length) return undefined;
    const dir = result.parts.join('/');
    this.resolved.set(key, dir);
    return dir;
  }

  /** Anything removed or turned into a symlink may change how later parents resolve. */
  private invalidate(): void {
    if (this.resolved.size > 0) this.resolved = new Map();
  }
}
