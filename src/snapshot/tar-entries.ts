import { compareLayerOrder, whiteoutPath } from './paths.js';
import type { TarHeader, TarType } from './tar-header.js';
import type { EntryMeta, FileType, LayerDiff } from './types.js';

/** One tar entry to write: its header and, for regular files, where to read the content. */
export interface TarEntry {
  readonly header: TarHeader;
  readonly source?: string;
}

export interface EntryOptions {
  /**
   * Seconds since the epoch. Entry mtimes newer than this are clamped to it (umoci's and
   * BuildKit's rule), and whiteouts get it as their time.
   */
  readonly sourceDateEpoch?: number;
  /**
   * Maps host owners to the owners recorded in the layer. A rootless build (a user namespace
   * mapping our uid to 0) passes one that turns our own uid/gid into 0, so files the step
   * made as "root" are recorded as root.
   */
  readonly mapOwner?: (uid: number, gid: number) => readonly [number, number];
  /** Optional xattrs per in-layer path (security.capability is the only one Docker keeps). */
  readonly xattrs?: ReadonlyMap<string, ReadonlyMap<string, Buffer>>;
}

const TAR_TYPE: Record<Exclude<FileType, 'socket'>, TarType> = {
  file: 'file',
  dir: 'dir',
  symlink: 'symlink',
  char: 'char',
  block: 'block',
  fifo: 'fifo',
};

function clampTime(seconds: number, options: EntryOptions): number {
  // Whole seconds only: sub-second times would make the digest depend on the filesystem.
  if (options.sourceDateEpoch !== undefined && seconds > options.sourceDateEpoch) {
    return options.sourceDateEpoch;
  }
  return Math.max(0, seconds);
}

/** `base`: the diff's root ending in '/', to which the path is appended (path.join normalises, and costs). */
function entryFor(path: string, meta: EntryMeta, base: string, options: EntryOptions): TarEntry | undefined {
  if (meta.type === 'socket') return undefined; // sockets cannot be carried by tar; Docker skips them
  const mtime = clampTime(meta.mtimeSec, options);
  const xattrs = options.xattrs?.get(path);
  const [uid, gid] = options.mapOwner?.(meta.uid, meta.gid) ?? [meta.uid, meta.gid];
  const mode = meta.mode;
  // Headers built whole rather than spread from a common part: one object per entry, not three.
  const header = (name: string, type: TarType, size: number, more?: Partial<TarHeader>): TarHeader =>
    xattrs === undefined
      ? { name, type, mode, uid, gid, size, mtime, ...more }
      : { name, type, mode, uid, gid, size, mtime, xattrs, ...more };
  if (meta.hardLinkTo !== undefined) {
    return { header: header(path, 'link', 0, { linkname: meta.hardLinkTo }) };
  }
  const type = TAR_TYPE[meta.type];
  switch (type) {
    case 'dir':
      return { header: header(`${path}/`, type, 0) };
    case 'file':
      return { header: header(path, type, meta.size), source: base + path };
    case 'symlink':
      return { header: header(path, type, 0, { linkname: meta.linkTarget ?? '' }) };
    case 'char':
    case 'block':
      return {
        header: header(path, type, 0, { devMajor: meta.devMajor ?? 0, devMinor: meta.devMinor ?? 0 }),
      };
    case 'fifo':
    case 'link':
      return { header: header(path, 'fifo', 0) };
  }
}

function whiteoutFor(path: string, options: EntryOptions): TarEntry {
  return {
    header: {
      name: whiteoutPath(path),
      type: 'file',
      mode: 0,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: options.sourceDateEpoch ?? 0,
    },
  };
}

/**
 * Turns a diff into tar entries in layer order: sorted by path components in byte order, parents
 * before children, and each directory's whiteouts before its other entries. A type change is a
 * whiteout of the old entry plus the new one, so extractors that do not replace across types on
 * their own still end up with the right tree.
 */
export function layerEntries(diff: LayerDiff, options: EntryOptions = {}): TarEntry[] {
  const base = diff.root.endsWith('/') ? diff.root : `${diff.root}/`;
  const keyed: { readonly path: string; readonly whiteout: boolean; readonly entry: TarEntry }[] = [];
  for (const change of diff.changes) {
    switch (change.kind) {
      case 'deleted':
        keyed.push({ path: change.path, whiteout: true, entry: whiteoutFor(change.path, options) });
        continue;
      case 'typeChanged':
        keyed.push({ path: change.path, whiteout: true, entry: whiteoutFor(change.path, options) });
        break;
      case 'added':
      case 'modified':
      case 'parent':
        break;
    }
    const entry = entryFor(change.path, change.meta, base, options);
    if (entry) keyed.push({ path: change.path, whiteout: false, entry });
  }
  // A diff from diffSnapshots is in this order already but for type changes' whiteouts, so the
  // sort (stable, run-merging) costs about one comparison per entry.
  keyed.sort((a, b) => compareLayerOrder(a.path, a.whiteout, b.path, b.whiteout));
  return keyed.map((item) => item.entry);
}
