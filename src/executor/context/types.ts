import type { IgnoreMatcher } from './dockerignore.js';

/**
 * Where COPY/ADD sources are read from. The build context is filtered by .dockerignore and
 * refuses anything outside it; a stage's or image's rootfs (`--from`) is read as that image
 * would see itself (symlinks resolved chroot-style, no .dockerignore).
 */
export type SourceRoot =
  | { readonly kind: 'context'; readonly dir: string; readonly ignore?: IgnoreMatcher }
  /** `name`: what the user calls it, for messages (`stage build`, `image alpine:3`), never the directory. */
  | { readonly kind: 'rootfs'; readonly dir: string; readonly name: string };

export type EntryType = 'file' | 'dir' | 'symlink' | 'archive';

/** One thing COPY/ADD will create. Plain data: it can be logged, digested, or stored as JSON. */
export interface CopyEntry {
  /** Absolute host path to read from. */
  readonly sourcePath: string;
  /**
   * What the entry is called for people and the cache: the path relative to the source root
   * (`src/app.js`), or the URL for a download.
   */
  readonly sourceName: string;
  /**
   * Where it goes, relative to the destination directory (`app.js`, `lib/x.js`). For a plan
   * with `singleFile`, the one entry's name is used only when the destination turns out to be a
   * directory; otherwise the file becomes the destination itself. `''` only for an archive,
   * which is extracted into the destination directory.
   */
  readonly destRelPath: string;
  readonly type: EntryType;
  /** Permission bits including setuid/setgid/sticky (`mode & 0o7777`). */
  readonly mode: number;
  readonly size: number;
  /** Modification time kept on the copy (Docker keeps the source's mtime). */
  readonly mtimeMs: number;
  readonly linkTarget?: string;
  /** Same value on every entry that is a hard link to the same source inode (`dev:ino`). */
  readonly hardLinkKey?: string;
  /**
   * The source's owner, kept when copying from a stage or image (`--from`) without --chown.
   * Absent for build-context sources, which become root's.
   */
  readonly owner?: Owner;
  /** Index of the source argument this entry came from. */
  readonly sourceIndex: number;
}

export interface CopyPlan {
  readonly instruction: 'COPY' | 'ADD';
  /** Absolute destination inside the image, cleaned, relative ones joined to WORKDIR. */
  readonly dest: string;
  /** The destination was written as a directory (`/`, `.` or `/.` at the end). */
  readonly destIsDir: boolean;
  /**
   * Exactly one file was selected, without --parents, to a destination not written as a
   * directory: the file becomes `dest` unless `dest` is an existing directory.
   */
  readonly singleFile: boolean;
  /** Parents before children; later entries overwrite earlier ones with the same destination. */
  readonly entries: readonly CopyEntry[];
  /**
   * No source was selected (wildcards that matched nothing): nothing is written, not even the
   * destination (BuildKit's AllowEmptyWildcard). An empty directory selected is not this.
   */
  readonly nothingSelected?: boolean;
}

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}
