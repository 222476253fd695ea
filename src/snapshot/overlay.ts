import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statfsSync,
  symlinkSync,
  type BigIntStats,
  type Dirent,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { fsPath, nameFromBytes, readLinkSync } from '../util/file-names.js';
import { removeTree } from '../util/remove-tree.js';
import { trace } from '../util/trace.js';
import { diffSnapshots } from './diff.js';
import { runOverlayHelper, type HelperOp } from './overlay-helper.js';
import { baseOf, parentOf } from './paths.js';
import { scanTree, toEntryStat, typeOf } from './scan.js';
import type { EntryStat, FileType, LayerDiff, TreeSnapshot } from './types.js';
import { mountsBelow, type UnpackedLayers } from './unpacked-layers.js';

/**
 * The overlayfs snapshotter, shaped like containerd's: `prepare` mounts an overlay of unpacked
 * layers (lowerdirs) with a fresh upperdir, the step writes through it, `commit` unmounts and
 * reads the layer from the upperdir, `remove` throws a snapshot away. Copy-up makes the
 * semantics Docker's: a file opened for writing is in the layer, a hard link to a lower file is
 * copied up alone, a chmod copies the whole file up.
 *
 * Rootless (kernel ≥ 5.11): stratum runs as root of a user namespace with a mount namespace of
 * its own (src/user-namespace.ts) and mounts there with `userxattr` (opaque flags are
 * `user.overlay.opaque`); when it exits, that namespace and every mount in it go.
 *
 * The kernel's mount option string is one page. Each mount gets its own short links to its
 * layers (`l/0`, `l/1`, ...) and is made after chdir into `l/` with relative paths, so even 500
 * layers (the kernel's stack limit) take about 2 KB.
 */
export interface ActiveSnapshot {
  /** The merged directory (the rootfs the step sees). */
  readonly merged: string;
  readonly upper: string;
  /** The lower layers alone, mounted read-only (none when there are no layers). */
  readonly view: string | undefined;
  /** The view's mount, made while the step runs (only `commit` reads the view). */
  viewMounted: Promise<void>;
  /** Mount points still mounted. */
  readonly mounted: string[];
  /** Layer directories, bottom first. */
  readonly lowers: readonly string[];
  readonly dir: string;
}

/**
 * Options said explicitly: a host whose module defaults differ must still give a plain diff.
 * `nofollow` rather than `off`: no redirect is made, nor followed even where the module would
 * (a layer's own `trusted.overlay.redirect` xattr must not steer a lookup), and `userxattr`
 * accepts no other value.
 */
const FIXED_OPTIONS = 'redirect_dir=nofollow,metacopy=off,index=off';
const OVERLAYFS_MAGIC = 0x794c7630;

/**
 * `volatile` (Linux 5.10) on the writable mount: without it, unmounting an overlay syncs the
 * whole upper filesystem (overlay's sync_fs), so each step's commit waited for the disk: 0.25 s
 * after a RUN creating 20,000 files, 0.08 s after one writing 300 MB, and whatever else the
 * filesystem owed. The committed upperdir becomes the unpacked layer later builds mount as a
 * lower (`adopt`), so it may skip that flush only because the store's flush journal has it
 * (flush-journal.ts: after a machine crash it is removed, not mounted torn); where the store
 * has no journal (no boot id) the mount is not volatile. The mark `volatile` leaves in the
 * workdir only stops a remount with the same workdir, which stratum never does.
 */
const VOLATILE_SUPPORTED = kernelAtLeast(release(), 5, 10);

function kernelAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const match = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (match === null) return false;
  const [have, haveMinor] = [Number(match[1]), Number(match[2])];
  return have > major || (have === major && haveMinor >= minor);
}

/** The kernel's OVL_MAX_STACK. */
export const MAX_OVERLAY_LAYERS = 500;

/**
 * The overlay mechanics under the overlay snapshotter (overlay-rootfs.ts): mount a chain of
 * unpacked layers with a fresh upperdir and workdir, read the upperdir as a diff, unmount.
 */
export class OverlayMounts {
  constructor(readonly layers: UnpackedLayers) {}

  /**
   * A fresh writable snapshot on top of `lowers` (layer directories, bottom first). Its lower
   * layers alone are mounted read-only beside it (what the step saw before it ran, for
   * `commit`). `replacing` is removed in the same helper call: one process per step boundary.
   */
  async prepare(chain: readonly string[], replacing?: ActiveSnapshot): Promise<ActiveSnapshot> {
    trace('overlay: asking roots');
    const lowers = await this.visibleLayers(withoutRepeats(chain));
    trace('overlay: roots known');
    if (lowers.length > MAX_OVERLAY_LAYERS) {
      throw new StratumError(
        'UNSUPPORTED',
        `overlay: ${lowers.length} layers exceed the kernel's limit of ${MAX_OVERLAY_LAYERS}`,
      );
    }
    const dir = await this.layers.newMountDir();
    // A dozen metadata calls on fresh names, made synchronously: through the thread pool each
    // cost this thread ~40 µs plus a round trip, on every step's mount.
    mkdirSync(join(dir, 'l'));
    lowers.forEach((lower, index) => {
      symlinkSync(lower, join(dir, 'l', String(index)));
    });
    for (const name of ['u', 'w', 'm', 'e', 'v']) mkdirSync(join(dir, name));
    // The merged root takes the upperdir's attributes: an image's root is 0755.
    chmodSync(join(dir, 'u'), 0o755);
    chmodSync(join(dir, 'm'), 0o755);
    const view = lowers.length > 0 ? join(dir, 'v') : undefined;
    const active: ActiveSnapshot = {
      merged: join(dir, 'm'),
      upper: join(dir, 'u'),
      view,
      viewMounted: Promise.resolve(),
      mounted: [],
      lowers,
      dir,
    };
    if (replacing !== undefined) await replacing.viewMounted.catch(() => undefined);
    const ops: HelperOp[] = replacing === undefined ? [] : this.unmountOps(replacing);
    ops.push({
      op: 'mount',
      cwd: join(dir, 'l'),
      target: join(dir, 'm'),
      data: this.options(lowers.length, true),
    });
    // On a failure, what is still mounted is found by the session's close (mountinfo), or
    // goes with stratum's own mount namespace when it runs rootless.
    trace('overlay: mounting');
    await runOverlayHelper(ops);
    trace('overlay: mounted');
    active.mounted.push(join(dir, 'm'));
    if (view !== undefined) {
      // Only `commit` reads the lower layers' view: the helper mounts it while the step runs,
      // after answering for the merged mount (~0.5 ms less before each step).
      active.viewMounted = runOverlayHelper([
        { op: 'mount', cwd: join(dir, 'l'), target: view, data: this.options(lowers.length, false) },
      ]).then(() => {
        active.mounted.push(view);
      });
      active.viewMounted.catch(() => undefined); // awaited by commit and remove
      // A failed build removes no snapshot: the session's close must not read mountinfo before
      // this mount is made (it then stayed mounted, and removing the session failed with EBUSY).
      this.layers.finishBeforeClosing(active.viewMounted);
    }
    // Off the step's path (~4 ms of thread-pool removals): the session waits for it at its end.
    if (replacing !== undefined) this.layers.removeLater(replacing.dir);
    return active;
  }

  /** Layer directories whose root is opaque (an `.wh..wh..opq` at the layer's root). */
  private readonly rootOpaque = new Map<string, boolean>();

  /**
   * `dir` was an upperdir: overlayfs marks a directory opaque only when it makes one where
   * another was removed, which the root never is, so its root is plain (no helper call to ask).
   */
  adoptedUpper(dir: string): void {
    this.rootOpaque.set(dir, false);
  }

  /**
   * The chain from its topmost layer with an opaque root up: overlayfs ignores the opaque flag on
   * a lowerdir's root, so the layers such a layer hides are left out of the mount instead. Layer
   * directories never change, so each is asked once per build (one helper call for the new ones).
   */
  private async visibleLayers(lowers: readonly string[]): Promise<readonly string[]> {
    const unknown = lowers.filter((lower) => !this.rootOpaque.has(lower));
    const answers = await runOverlayHelper(
      unknown.map((path): HelperOp => ({ op: 'getopq', path, name: this.layers.opaqueXattr })),
    );
    unknown.forEach((path, index) => this.rootOpaque.set(path, answers[index] === 'y'));
    for (let index = lowers.length - 1; index > 0; index--) {
      if (this.rootOpaque.get(lowers[index]!) === true) return lowers.slice(index);
    }
    return lowers;
  }

  private unmountOps(active: ActiveSnapshot): HelperOp[] {
    const ops = active.mounted.map((target): HelperOp => ({ op: 'umount', target }));
    active.mounted.length = 0;
    return ops;
  }

  private options(count: number, writable: boolean): string {
    const lowerdir = [...Array(count).keys()].reverse().map(String);
    // The empty directory at the bottom: a mount needs one lowerdir, a read-only one two.
    lowerdir.push('../e');
    const parts = [`lowerdir=${lowerdir.join(':')}`];
    if (writable) {
      parts.push('upperdir=../u', 'workdir=../w');
      if (VOLATILE_SUPPORTED && this.layers.placesUnflushed) parts.push('volatile');
    }
    parts.push(FIXED_OPTIONS);
    // A rootless store (user.overlay.* markers): in a user namespace overlay reads those only.
    if (this.layers.opaqueXattr.startsWith('user.')) parts.push('userxattr');
    return parts.join(',');
  }

  /**
   * Unmounts the snapshot and reads what the step did from its upperdir: files and directories
   * it holds, 0/0 devices as deletions, opaque directories as their lower children deleted.
   * The diff has the same shape as the scan snapshotter's (its root is the upperdir).
   */
  async commit(active: ActiveSnapshot, signal?: AbortSignal): Promise<LayerDiff> {
    // The step is over: the upperdir can be read while the merged mount still stands, so the
    // helper unmounts it while this process scans the upperdir (an unmount after 20,000 new
    // files took ~40 ms); the opaque-flag queries queue behind it.
    const merged = join(active.dir, 'm');
    const mounted = active.mounted.indexOf(merged);
    if (mounted >= 0) active.mounted.splice(mounted, 1);
    const unmounting = runOverlayHelper(mounted >= 0 ? [{ op: 'umount', target: merged }] : []);
    unmounting.catch(() => undefined); // awaited below, after the diff
    await active.viewMounted;
    const diff = await upperDiff(active.upper, active.view, this.layers.opaqueXattr, signal);
    await unmounting;
    return diff;
  }

  /**
   * Unmounts the merged directory before the step is over, so the step may write the upperdir
   * directly (overlayfs allows changes to the upper tree while it is not mounted); `commit`
   * then reads the upperdir as always.
   */
  async detach(active: ActiveSnapshot): Promise<void> {
    const merged = join(active.dir, 'm');
    const mounted = active.mounted.indexOf(merged);
    if (mounted < 0) return;
    active.mounted.splice(mounted, 1);
    await runOverlayHelper([{ op: 'umount', target: merged }]);
  }

  /** Throws the snapshot away (its upperdir too, unless it was adopted as a layer). */
  async remove(active: ActiveSnapshot): Promise<void> {
    await active.viewMounted.catch(() => undefined);
    const ops = this.unmountOps(active);
    for (const point of await mountsBelow(active.dir)) {
      if (!ops.some((op) => op.op === 'umount' && op.target === point))
        ops.push({ op: 'umount', target: point });
    }
    await runOverlayHelper(ops);
    await removeTree(active.dir);
  }
}

/**
 * Whether overlay can be used with its session directory under `root`; undefined when it can,
 * otherwise why not (for the build log).
 */
export async function overlayUnavailable(snapshotter: OverlayMounts): Promise<string | undefined> {
  const { layers } = snapshotter;
  // Synchronous reads: at every build's start, where each round trip costs more than the call.
  const filesystems = readOrEmpty('/proc/filesystems');
  if (!/\toverlay\n/.test(filesystems)) return 'the kernel has no overlay filesystem';
  let info;
  try {
    info = statfsSync(layers.root);
  } catch {
    info = undefined;
  }
  if (info !== undefined && info.type === OVERLAYFS_MAGIC) {
    return `the cache directory ${layers.root} is itself on overlayfs (make it a volume)`;
  }
  // A test mount costs two helper processes: once it worked on this kernel, a marker says so.
  const marker = join(layers.root, 'probed');
  const kernel = `${release()}\n`;
  if (readOrEmpty(marker) === kernel) return undefined;
  let probe: ActiveSnapshot | undefined;
  try {
    probe = await snapshotter.prepare([]);
  } catch (error) {
    return `a test mount failed: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    if (probe !== undefined) await snapshotter.remove(probe);
  }
  await writeFile(marker, kernel);
  return undefined;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** No scan in the diff is "racy": every upperdir entry is emitted or compared by metadata. */
const NEVER_RACY = 1n << 62n;

function lstatOrUndefined(path: string): BigIntStats | undefined {
  try {
    return lstatSync(fsPath(path), { bigint: true });
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

function statOf(path: string): EntryStat | undefined {
  const stats = lstatOrUndefined(path);
  if (stats === undefined) return undefined;
  return toEntryStat(stats, stats.isSymbolicLink() ? readLinkSync(path) : undefined);
}

/** From this many whiteouts in one directory on, the lower directory is listed, not looked up per name. */
const LIST_FROM = 64;

function byParent(paths: readonly string[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const path of paths) {
    const dir = parentOf(path);
    const group = groups.get(dir);
    if (group === undefined) groups.set(dir, [path]);
    else group.push(path);
  }
  return groups;
}

/** The names in a directory with their types (Node lstat's those the filesystem gives no type). */
function listTypes(dir: string): Map<string, FileType> {
  const types = new Map<string, FileType>();
  let entries: Dirent[];
  try {
    entries = readdirSync(fsPath(dir), { withFileTypes: true });
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return types;
    throw error;
  }
  if (entries.some((entry) => entry.name.includes('\uFFFD'))) {
    // A name that is not UTF-8: listed again as bytes, kept escaped (util/file-names.ts).
    for (const entry of readdirSync(fsPath(dir), { withFileTypes: true, encoding: 'buffer' })) {
      types.set(nameFromBytes(entry.name), typeOf(entry));
    }
    return types;
  }
  for (const entry of entries) types.set(entry.name, typeOf(entry));
  return types;
}

/**
 * What a whiteout hides, for the diff: a deletion of this type. Nothing else of the lower entry
 * is read for a path the upperdir no longer has (diffSnapshots emits `deleted` with the type).
 */
function deletedEntry(type: FileType): EntryStat {
  return {
    type,
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    mtimeNs: 0n,
    ctimeNs: 0n,
    ino: 0n,
    dev: 0n,
    nlink: 0,
    rdev: 0n,
  };
}

function isWhiteout(stat: EntryStat): boolean {
  return stat.type === 'char' && stat.rdev === 0n;
}

/**
 * The layer in an upperdir, as a diff against `view` (the lower layers merged; undefined when
 * there are none). Every file the upperdir holds is in the layer (it was written, or opened for
 * writing, or had its metadata changed); a directory is in it when its own metadata changed or
 * something below it is; a 0/0 device is a deletion; an opaque directory's lower subtree is
 * compared whole, so a directory deleted and made again gets per-child deletions as the scan
 * snapshotter gives them.
 */
export async function upperDiff(
  upper: string,
  view: string | undefined,
  opaqueXattr: string,
  signal?: AbortSignal,
): Promise<LayerDiff> {
  const scanned = await scanTree(upper, signal ? { signal } : {});
  const afterEntries = new Map<string, EntryStat>();
  const whiteouts: string[] = [];
  for (const [path, stat] of scanned.entries) {
    if (isWhiteout(stat)) whiteouts.push(path);
    else afterEntries.set(path, stat);
  }
  const before = new Map<string, EntryStat>();
  if (view !== undefined) {
    /** Directories known to exist in the lower layers (a path below another can't). */
    const lowerDirs = new Set<string>(['']);
    const opaqueCandidates: string[] = [];
    for (const [path, stat] of afterEntries) {
      if (!lowerDirs.has(parentOf(path))) continue;
      const lower = statOf(join(view, path));
      if (lower === undefined) continue;
      if (lower.type === 'dir' && stat.type === 'dir') {
        lowerDirs.add(path);
        opaqueCandidates.push(path);
        // A directory is compared by mode, owner and mtime only: the inode is the upperdir's.
        before.set(path, { ...lower, ino: stat.ino, dev: stat.dev });
      } else before.set(path, lower);
    }
    for (const [dir, paths] of byParent(whiteouts)) {
      if (!lowerDirs.has(dir)) continue;
      if (paths.length < LIST_FROM) {
        for (const path of paths) {
          const lower = statOf(join(view, path));
          if (lower !== undefined) before.set(path, lower);
        }
        continue;
      }
      // Many deletions in one directory (`rm` of half of 20,000 files): one listing of the
      // lower directory rather than a lookup through the overlay per whiteout.
      const lowerTypes = listTypes(join(view, dir));
      for (const path of paths) {
        const type = lowerTypes.get(baseOf(path));
        if (type !== undefined) before.set(path, deletedEntry(type));
      }
    }
    const answers = await runOverlayHelper(
      opaqueCandidates.map((path): HelperOp => ({
        op: 'getopq',
        path: join(upper, path),
        name: opaqueXattr,
      })),
    );
    const opaque = opaqueCandidates.filter((_, index) => answers[index] === 'y');
    for (const dir of opaque) {
      if (opaque.some((other) => other !== dir && dir.startsWith(`${other}/`))) continue;
      // The step replaced the directory: everything the lower layers had below it is "before".
      const lowerTree = await scanTree(join(view, dir), signal ? { signal } : {});
      for (const [rel, stat] of lowerTree.entries) {
        const path = `${dir}/${rel}`;
        const now = afterEntries.get(path);
        before.set(
          path,
          now?.type === 'dir' && stat.type === 'dir' ? { ...stat, ino: now.ino, dev: now.dev } : stat,
        );
      }
    }
  }
  const after: TreeSnapshot = { root: upper, startedNs: scanned.startedNs, entries: afterEntries };
  const beforeTree: TreeSnapshot = { root: upper, startedNs: NEVER_RACY, entries: before };
  return diffSnapshots(beforeTree, { ...after, startedNs: NEVER_RACY }, upper, signal ? { signal } : {});
}

/**
 * The chain with only the topmost copy of a layer that occurs more than once (two steps that made
 * identical layers share a DiffID, so a directory): overlayfs refuses overlapping lowerdirs
 * (ELOOP). Dropping the lower copies changes nothing: whatever a lower copy decides for a path,
 * the identical upper copy decides first, with the same entries, whiteouts and opaque dirs.
 */
export function withoutRepeats(chain: readonly string[]): string[] {
  const seen = new Set<string>();
  const kept: string[] = [];
  for (let index = chain.length - 1; index >= 0; index--) {
    const layer = chain[index]!;
    if (seen.has(layer)) continue;
    seen.add(layer);
    kept.unshift(layer);
  }
  return kept;
}
