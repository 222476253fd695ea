// Layer tar → directory: the disk target of the layer driver (apply-layer.ts), which makes every
// decision; here are only the effects (small files written synchronously, owners, modes, times,
// device nodes, overlay-form markers).
import { execFile } from 'node:child_process';
import { inUserNamespace } from '../util/user-namespace.js';
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { chmod, link, open, rename, rm, utimes } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { runOverlayHelper, type HelperOp } from './overlay-helper.js';
import { StratumError, errnoCode, systemErrorText } from '../errors.js';
import { decompressedStream } from '../oci/compression.js';
import { displayName, fsPath, listDir, readLinkSync } from '../util/file-names.js';
import {
  applyLayer,
  type EntryBody,
  type LayerEntry,
  type LayerTarget,
  type OverlayMarkers,
} from './apply-layer.js';
import { childPath, type LayerWrites } from './layer-rules.js';
import type { Lookup } from './resolve.js';
import { byteExactExtract } from './tar-reader.js';

const run = promisify(execFile);

/** A host path as fs takes it: names that are not UTF-8 as their bytes (oci/file-names.ts). */
type HostPath = string | Buffer;

async function writeBody(body: EntryBody, path: HostPath): Promise<void> {
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
  path: HostPath,
  owner: { uid: number; gid: number; isRoot: boolean } | undefined,
  mode: number,
  mtime: Date,
): Promise<void> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const fd = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    for (const chunk of chunks) writeSync(fd, chunk);
    if (owner !== undefined) {
      try {
        fchownSync(fd, owner.uid, owner.gid);
      } catch (error) {
        if (owner.isRoot) throw error;
      }
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
   * false: every file stays the extracting process's (a filesystem exported for its caller:
   * rootless, owners of the namespace's range would be ids the caller cannot even remove).
   */
  readonly giveOwners?: boolean;
}

export interface ExtractResult {
  readonly entries: number;
  readonly warnings: readonly string[];
  /** With overlayOpaqueXattr: the directories marked opaque (relative paths). */
  readonly opaqueDirs?: readonly string[];
}

interface DeferredDir {
  readonly path: HostPath;
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
 * The decisions are the driver's (apply-layer.ts); this is its disk target.
 */
export async function extractLayer(
  input: Readable,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const layer = options.layerName ?? 'layer';
  const disk = new DiskTarget(target.replace(/\/+$/, '') || '/', options);
  const extract = byteExactExtract();
  const feeding = pipeline(input, extract, options.signal ? { signal: options.signal } : {});
  feeding.catch(() => undefined);
  let entries: number;
  try {
    ({ entries } = await applyLayer(extract, disk, {
      layerName: layer,
      ...(options.signal ? { signal: options.signal } : {}),
    }));
    await feeding;
  } catch (error) {
    extract.destroy();
    if (error instanceof StratumError) throw error;
    // A system error names a path of the build's own directories: say what failed, not where.
    throw new StratumError('INVALID_IMAGE', `${layer}: ${systemErrorText(error)}`, { cause: error });
  }
  const opaqueDirs = await disk.finish();
  return opaqueDirs === undefined
    ? { entries, warnings: disk.warnings }
    : { entries, warnings: disk.warnings, opaqueDirs };
}

/**
 * The disk target: the driver's effects as file system calls under `root`. Owners, modes and
 * times are set here (directories' modes and mtimes at the end), and in overlay form the
 * whiteouts and opaque directories are made in one helper call at the end.
 */
class DiskTarget implements LayerTarget {
  readonly warnings: string[] = [];
  readonly overlay?: OverlayMarkers;
  /**
   * Root of the host: every owner must be given and device nodes made. Root of a user namespace
   * (a rootless build) gives every owner its namespace maps and keeps the others ours, as
   * without root.
   */
  private readonly isRoot = process.getuid?.() === 0 && !inUserNamespace();
  private readonly deferred: DeferredDir[] = [];
  /** Overlay form: host paths of whiteouts and opaque directories, made by finish(). */
  private readonly overlayWhiteouts: string[] = [];
  private readonly overlayOpaque: string[] = [];

  constructor(
    private readonly root: string,
    private readonly options: ExtractOptions,
  ) {
    if (options.overlayOpaqueXattr !== undefined) {
      this.overlay = {
        whiteout: (path) => this.overlayWhiteouts.push(this.hostName(path)),
        markOpaque: (dir) => this.overlayOpaque.push(this.hostName(dir)),
      };
    }
  }

  /** Host path of an in-root path ('' is the root), escaped names kept escaped. */
  private hostName(path: string): string {
    return path === '' ? this.root : this.root === '/' ? `/${path}` : `${this.root}/${path}`;
  }

  /** Host path of an in-root path as fs calls take it. */
  private host(path: string): HostPath {
    return fsPath(this.hostName(path));
  }

  warn(message: string): void {
    this.warnings.push(message);
    this.options.onWarning?.(message);
  }

  lookup(path: string): Lookup {
    const host = this.host(path);
    let info;
    try {
      info = lstatSync(host);
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
      throw error;
    }
    if (info.isDirectory()) return { kind: 'dir' };
    if (info.isSymbolicLink()) return { kind: 'symlink', target: readLinkSync(this.hostName(path)) };
    return { kind: 'other' };
  }

  makeDir(path: string): void {
    mkdirSync(this.host(path), { mode: 0o755 });
  }

  async remove(path: string): Promise<void> {
    await rm(this.host(path), { recursive: true, force: true });
  }

  /** Removes everything under `dir` that this layer did not write: an opaque whiteout. */
  async prune(dir: string, written: LayerWrites): Promise<void> {
    let names;
    try {
      names = await listDir(this.hostName(dir));
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return;
      throw error;
    }
    for (const name of names) {
      const path = childPath(dir, name);
      if (!written.has(path)) await rm(this.host(path), { recursive: true, force: true });
      else if (lstatSync(this.host(path)).isDirectory()) await this.prune(path, written);
    }
  }

  // Owners this process may not give (without root: any other; as root of a user namespace:
  // ids it does not map) stay ours, which the layer writer records as root, rather than
  // failing the extraction.
  private setOwner(path: HostPath, uid: number, gid: number): void {
    if (this.options.giveOwners === false) return;
    try {
      lchownSync(path, uid, gid);
    } catch (error) {
      if (this.isRoot) throw error;
    }
  }

  async write(inRoot: string, entry: LayerEntry, body: EntryBody, merge: boolean): Promise<boolean> {
    const path = this.host(inRoot);
    const { what, mode, uid, gid, mtime } = entry;
    switch (entry.type) {
      // Directories and symlinks are a few metadata calls each, made synchronously: through
      // the thread pool each call cost ~40 µs of this thread plus a round trip (a busybox
      // base's 268 symlinks took ~100 ms to extract).
      case 'dir':
        body.resume();
        if (!merge) mkdirSync(path, { mode: 0o700 });
        this.setOwner(path, uid, gid);
        this.deferred.push({ path, mode, mtime, depth: inRoot.split('/').length });
        return true;
      case 'file':
        if ((entry.size ?? Infinity) <= SMALL_FILE) {
          await writeSmallFile(
            body,
            path,
            this.options.giveOwners === false ? undefined : { uid, gid, isRoot: this.isRoot },
            mode,
            mtime,
          );
          return true;
        }
        await writeBody(body, path);
        break;
      case 'symlink':
        body.resume();
        symlinkSync(fsPath(entry.linkTarget), path);
        this.setOwner(path, uid, gid);
        lutimesSync(path, mtime, mtime);
        return true;
      case 'char':
      case 'block':
      case 'fifo': {
        body.resume();
        if (entry.type !== 'fifo' && !this.isRoot) {
          this.warn(`${what}: device node skipped (needs root of the host)`);
          return false;
        }
        // A process takes its arguments as strings: a name that is not UTF-8 is made under a
        // plain name in the root and renamed into place.
        const made = typeof path === 'string' ? path : `${this.root}/.stratum-node-${process.pid}`;
        try {
          if (entry.type === 'fifo') await run('mkfifo', ['-m', '600', made]);
          else {
            const kind = entry.type === 'char' ? 'c' : 'b';
            await run('mknod', ['-m', '600', made, kind, String(entry.devMajor), String(entry.devMinor)]);
          }
          if (made !== path) await rename(made, path);
        } catch (error) {
          const type =
            entry.type === 'char' ? 'character-device' : entry.type === 'block' ? 'block-device' : 'fifo';
          this.warn(
            `${what}: ${type} skipped (${error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)})`,
          );
          return false;
        }
        break;
      }
    }
    this.setOwner(path, uid, gid);
    // After chown: chown clears setuid/setgid, so the mode goes on last.
    await chmod(path, mode);
    await utimes(path, mtime, mtime);
    return true;
  }

  async link(inRoot: string, source: string, entry: { what: string; linkname: string }): Promise<void> {
    try {
      await link(this.host(source), this.host(inRoot));
    } catch (error) {
      throw new StratumError(
        'INVALID_IMAGE',
        `${entry.what}: hard link to "${displayName(entry.linkname)}" failed: ${errnoCode(error) ?? String(error)}`,
        { cause: error },
      );
    }
    // The inode's owner, mode and times come from the entry that created it.
  }

  /**
   * Once the entries are written: overlay form's whiteouts and opaque directories (one helper
   * process for the whole layer; returns the opaque directories), then directory modes and times.
   */
  async finish(): Promise<string[] | undefined> {
    let opaqueDirs: string[] | undefined;
    const xattr = this.options.overlayOpaqueXattr;
    if (xattr !== undefined) {
      const ops: HelperOp[] = [
        ...this.overlayWhiteouts.map((path): HelperOp => ({ op: 'wh', path })),
        ...this.overlayOpaque.map((path): HelperOp => ({ op: 'opq', path, name: xattr })),
      ];
      await runOverlayHelper(ops);
      opaqueDirs = this.overlayOpaque
        .map((dir) => (dir === this.root ? '' : dir.slice(this.root.length + 1)))
        .sort();
    }
    // Directories last and deepest first: writing their children changed their mtimes, and a
    // read-only directory mode would have blocked those writes for a non-root user.
    this.deferred.sort((a, b) => b.depth - a.depth);
    for (const dir of this.deferred) {
      await chmod(dir.path, dir.mode);
      await utimes(dir.path, dir.mtime, dir.mtime);
    }
    return opaqueDirs;
  }
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
