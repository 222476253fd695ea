/**
 * The data that flows out of a snapshot: what a rootfs looked like (TreeSnapshot) and what changed
 * between two looks (LayerDiff). LayerDiff is plain data (numbers and strings, no bigint) so it can
 * be logged, cached as JSON and handed to the layer writer or to `analyze`.
 */

export type FileType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/**
 * One path's lstat fields as recorded by a scan. Times are nanoseconds since the epoch as bigint
 * because `number` loses nanoseconds; ino and dev are bigint because 64-bit inode numbers exist.
 */
export interface EntryStat {
  readonly type: FileType;
  /** permission bits plus setuid/setgid/sticky (mode & 0o7777) */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly ino: bigint;
  readonly dev: bigint;
  readonly nlink: number;
  readonly rdev: bigint;
  /** symlinks only */
  readonly linkTarget?: string;
}

/** A scan of one directory tree. Paths are relative, '/'-separated, without a leading './'. */
export interface TreeSnapshot {
  readonly root: string;
  /** wall-clock time when the scan started; changes within that second are "racy" (see diff.ts) */
  readonly startedNs: bigint;
  readonly entries: ReadonlyMap<string, EntryStat>;
}

/** What the layer writer needs to know about one path, as plain data. */
export interface EntryMeta {
  readonly type: FileType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly linkTarget?: string;
  readonly devMajor?: number;
  readonly devMinor?: number;
  /**
   * Set on every member of a hard-link group except the first one in layer order: the in-layer
   * path (relative, no leading slash) that this entry is a type-1 link to.
   */
  readonly hardLinkTo?: string;
}

/**
 * One change, keyed by kind. `parent` entries are unchanged directories that the layer still needs
 * so that every changed path has its parents in the tar (as containerd and Docker write them).
 * `typeChanged` means the path exists before and after with a different type: the writer emits a
 * whiteout for the old one and then the new entry (and, for a new directory, its whole subtree
 * appears as `added`).
 */
export type LayerChange =
  | { readonly kind: 'added'; readonly path: string; readonly meta: EntryMeta }
  | { readonly kind: 'modified'; readonly path: string; readonly meta: EntryMeta }
  | {
      readonly kind: 'typeChanged';
      readonly path: string;
      readonly from: FileType;
      readonly meta: EntryMeta;
    }
  | { readonly kind: 'deleted'; readonly path: string; readonly type: FileType }
  | { readonly kind: 'parent'; readonly path: string; readonly meta: EntryMeta };

export interface LayerDiff {
  /** the directory whose current content the layer writer reads */
  readonly root: string;
  /** in layer order: parents before children, deletions before their siblings */
  readonly changes: readonly LayerChange[];
  /** hard-link groups among the emitted entries, each in layer order (the first is the file) */
  readonly hardLinkGroups: readonly (readonly string[])[];
}

export interface ScanOptions {
  /** return true to leave a path (and everything below it) out of the snapshot */
  readonly exclude?: (relPath: string) => boolean;
  readonly signal?: AbortSignal;
  /** lstat on the threadpool instead of in time slices; see scanTree */
  readonly parallel?: boolean;
}

/**
 * A directory's state recorded before a step, to report what the step changed by scanning it
 * again (the scan snapshotter's way; the overlay snapshotter reads its upperdir instead).
 */
export interface TreeBaseline {
  /** record the state before a step */
  prepare(signal?: AbortSignal): Promise<void>;
  /** compare with the state recorded by prepare(); the new state becomes the next baseline */
  commit(signal?: AbortSignal): Promise<LayerDiff>;
}
