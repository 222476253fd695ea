import type { OfflineUpper } from '../../snapshot/snapshotter.js';
import { inUserNamespace } from '../../util/user-namespace.js';
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import {
  chmod,
  copyFile,
  lchown as lchownOrFail,
  link,
  lutimes,
  mkdir,
  rm,
  symlink,
  utimes,
} from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { errnoCode, StratumError, systemErrorText } from '../../errors.js';
import { fsPath } from '../../util/file-names.js';
import { extractArchive } from './archive.js';
import { applyChmod, parseChmod, type ChmodSpec } from './chmod.js';
import type { HeldContents } from './held-contents.js';
import { components, resolveInRoot } from './paths.js';
import type { CopyEntry, CopyPlan, Owner } from './types.js';
import { resolvedNow } from '../../util/now.js';

/**
 * Writes a CopyPlan onto a stage rootfs. Every destination is resolved inside the rootfs as a
 * chrooted process would see it, so a rootfs symlink (`/app -> /etc`, `/app -> ../../..`) can
 * redirect a write only to another place inside the rootfs, never out of it. Below the resolved
 * destination, entries are created by lstat (never following): an existing symlink where a
 * directory is copied is replaced by the directory, as Docker's untar does.
 */

export interface ApplyOptions {
  /** `--chown` (the engine resolves names through the image's /etc/passwd and /etc/group). */
  readonly chown?: Owner;
  /** `--chmod`: octal (number or string) or symbolic (`u+x`). */
  readonly chmod?: number | string;
  /**
   * `--link`: accepted for the engine's benefit. With --link the engine applies the plan onto an
   * empty directory (so nothing in the rootfs is followed) and stacks the result as its own
   * layer; nothing here changes.
   */
  readonly link?: boolean;
  readonly signal?: AbortSignal;
  /** Without root: how owners other than root reach the disk (see RootlessOwners). */
  readonly rootless?: RootlessOwners;
  /** The rootfs is an overlay mount whose new small files may go straight to its upperdir. */
  readonly offline?: OfflineUpper;
  /** Small files' bytes already read (for the cache key): written without reading them again. */
  readonly contents?: HeldContents;
}

/**
 * The upperdir of the overlay mounted at the rootfs. Creating a file through an overlay mount
 * costs ~300 µs against ~65 µs on the filesystem below (bench/README.md, "Build"), and overlayfs
 * allows changes to the upper tree while it is not mounted. So applyCopy resolves every path and
 * makes every directory through the mount (symlinks of lower layers followed inside the rootfs,
 * whiteouts and opaque directories of lower layers as the kernel reads them, parents copied up by
 * the kernel), writes through it whatever replaces an existing entry, and only then unmounts it
 * (`detach`) and writes the small files that are new straight into the upperdir: the upperdir
 * ends as the kernel would have left it, and the step's layer is read from it as always.
 */
export type { OfflineUpper };

/**
 * A rootless build's owners. What this process writes is its own, which the build's user
 * namespace reads as root; any other owner is given by root of that namespace, in one batch at
 * the end of the copy. Owners here are the namespace's ids (what the layer records).
 */
export interface RootlessOwners {
  /** A source file's owner on disk as the namespace reads it (COPY --from keeps owners). */
  readonly fromHost: (owner: Owner) => Owner;
  /** Refuses an owner the namespace cannot hold, saying what is missing. */
  readonly check: (owner: Owner) => void;
  /** Gives owners as the namespace's root; `mode` (or -1) goes on again after each chown. */
  readonly give: (
    ops: readonly { op: 'chown'; path: string; uid: number; gid: number; mode: number }[],
  ) => Promise<unknown>;
}

export interface ApplyResult {
  /** Host path of the destination that was written (a directory, or the file for a single file). */
  readonly destHostPath: string;
  /** The same inside the rootfs, after symlinks were resolved (`/etc` for `/app -> /etc`). */
  readonly destInRoot: string;
  readonly written: number;
}

const ROOT: Owner = { uid: 0, gid: 0 };

/** Root of the host; root of a user namespace gives owners as rootless builds do (RootlessOwners). */
const isRoot = process.getuid?.() === 0 && !inUserNamespace();

/**
 * Without root (a rootless build), files cannot be given away: they stay ours, and the layer
 * writer records our own uid/gid as root (see mapOwner in src/snapshot/tar-entries.ts). Other
 * owners go through RootlessOwners where a copy is given one.
 */
async function lchown(path: string, uid: number, gid: number): Promise<void> {
  try {
    await lchownOrFail(fsPath(path), uid, gid);
  } catch (error) {
    if (isRoot) throw error;
  }
}

function lchownNow(path: string, uid: number, gid: number): void {
  try {
    lchownSync(fsPath(path), uid, gid);
  } catch (error) {
    if (isRoot) throw error;
  }
}

/** Sets owners during one copy: lchown as root; rootless, queued for the namespace's root. */
class OwnerSetter {
  private readonly queued: { op: 'chown'; path: string; uid: number; gid: number; mode: number }[] = [];

  constructor(private readonly rootless: RootlessOwners | undefined) {}

  /** Whether this process sets `owner` itself (as root; rootless only root's, by owning it). */
  direct(owner: Owner): boolean {
    if (isRoot || this.rootless === undefined) return true;
    if (owner.uid === 0 && owner.gid === 0) return true;
    this.rootless.check(owner);
    return false;
  }

  /** After the entry is written: `mode` is -1 for a symlink (nothing to re-apply). */
  async set(path: string, owner: Owner, mode: number): Promise<void> {
    if (this.direct(owner)) await lchown(path, owner.uid, owner.gid);
    else this.queued.push({ op: 'chown', path, uid: owner.uid, gid: owner.gid, mode });
  }

  /** For a file written with its owner set by descriptor (root): queue it when rootless. */
  queue(path: string, owner: Owner, mode: number): void {
    if (!this.direct(owner)) this.queued.push({ op: 'chown', path, uid: owner.uid, gid: owner.gid, mode });
  }

  async finish(): Promise<void> {
    if (this.queued.length > 0) await this.rootless?.give(this.queued.splice(0));
  }
}

/** How many files are copied at once (the kernel does the copying; this hides latency). */
const COPY_CONCURRENCY = 8;

function ioError(plan: CopyPlan, what: string, error: unknown): StratumError {
  if (error instanceof StratumError) return error;
  // `what` names the user's path; the error's own names the rootfs it was written in.
  return new StratumError('IO', `${plan.instruction} to ${plan.dest}: ${what}: ${systemErrorText(error)}`, {
    cause: error,
  });
}

// Synchronous: asked for a copy's destination and for each directory it writes into, where a
// thread-pool round trip costs more than the call (0.3-1 ms on a small VM).
function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  return resolvedNow(() => {
    try {
      return lstatSync(fsPath(path), { throwIfNoEntry: false });
    } catch (error) {
      if (errnoCode(error) === 'ENOTDIR') return undefined;
      throw error;
    }
  });
}

/**
 * `mkdir -p` inside the rootfs: resolves `inRootPath` chroot-style, creates each missing
 * directory as 0755 owned by `owner` (root, or the --chown user, as Docker does for the
 * directories COPY creates), and returns the host path. Existing directories are left alone.
 */
export async function mkdirInRoot(
  rootfs: string,
  inRootPath: string,
  owner: Owner = ROOT,
  setOwner?: (path: string, owner: Owner) => Promise<void>,
): Promise<string> {
  // Synchronous lookups and creations (as the resolver's): a RUN's working directory and a
  // COPY's destination are made on the step's path, where each asynchronous call was a
  // thread-pool round trip.
  const resolved = await resolveInRoot(rootfs, inRootPath, { followFinal: true });
  if (!resolved.missing) {
    const st = lstatSync(fsPath(resolved.hostPath));
    if (!st.isDirectory()) {
      throw new StratumError(
        'BUILD_FAILED',
        `${inRootPath}: ${resolved.inRoot} exists and is not a directory`,
      );
    }
    return resolved.hostPath;
  }
  // Walk down from the deepest existing directory, creating the rest one by one.
  let current = rootfs;
  for (const part of components(resolved.inRoot)) {
    current = join(current, part);
    const st = lstatSync(fsPath(current), { throwIfNoEntry: false });
    if (st === undefined) {
      mkdirSync(fsPath(current), { mode: 0o755 });
      if (setOwner === undefined) lchownNow(current, owner.uid, owner.gid);
      else await setOwner(current, owner);
      chmodSync(fsPath(current), 0o755);
    } else if (!st.isDirectory()) {
      throw new StratumError('BUILD_FAILED', `${inRootPath}: ${part} exists and is not a directory`);
    }
  }
  return resolved.hostPath;
}

/** Joins a plan-relative path below a resolved directory, refusing anything but plain names. */
function below(dir: string, rel: string): string {
  const parts = rel.split('/');
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..') {
      throw new StratumError('UNSAFE_PATH', `refusing destination path "${rel}"`);
    }
  }
  return join(dir, ...parts);
}

interface WriteState {
  /** Owner of implicit parents and the destination directory: root, or the --chown user. */
  readonly owner: Owner;
  /** `--chown` was given: every entry gets `owner`, whatever its source's. */
  readonly chowned: boolean;
  readonly chmod: ChmodSpec | undefined;
  readonly links: Map<string, string>;
  readonly dirTimes: { path: string; mtimeMs: number }[];
  /** New small files left for the upperdir (see OfflineUpper), when that is used. */
  readonly deferred: { readonly entry: CopyEntry; readonly target: string }[] | undefined;
  /** Directories this copy made: nothing is below them but what it writes there. */
  readonly madeDirs: Set<string>;
  readonly signal: AbortSignal | undefined;
  readonly owners: OwnerSetter;
  readonly rootless: RootlessOwners | undefined;
  readonly contents: HeldContents | undefined;
}

/** An entry's owner: the --chown user, else the source's (from a stage or image), else root. */
function ownerFor(state: WriteState, entry: CopyEntry): Owner {
  if (state.chowned) return state.owner;
  if (entry.owner === undefined) return ROOT;
  // A source's owner was read from disk: rootless, that is a host id.
  return state.rootless === undefined ? entry.owner : state.rootless.fromHost(entry.owner);
}

function modeFor(state: WriteState, entry: CopyEntry): number {
  return state.chmod === undefined ? entry.mode : applyChmod(state.chmod, entry.mode, entry.type === 'dir');
}

/**
 * Small files are copied with synchronous calls on one descriptor (read, open, write, fchown,
 * fchmod, futimes, close): for many small files the thread-pool round trip of each async call
 * costs more than the work itself (measured: about twice as fast as async copyFile + lchown +
 * chmod + utimes). The caller yields to the event loop between batches.
 */
const SMALL_FILE = 256 * 1024;

/** Synchronous small-file copies between two turns of the event loop (progress keeps drawing). */
const YIELD_EVERY = 128;

function writeSmallFileSync(
  source: string,
  /** The source's bytes when they were read already (HeldContents). */
  held: Buffer | undefined,
  target: string,
  /** undefined: leave the file ours (rootless; see OwnerSetter) */
  owner: Owner | undefined,
  mode: number,
  seconds: number,
): void {
  const data = held ?? readFileSync(fsPath(source));
  const fd = openSync(fsPath(target), 'wx', 0o600);
  try {
    writeSync(fd, data);
    // chown before chmod: chown clears setuid/setgid bits.
    if (owner !== undefined) fchownSync(fd, owner.uid, owner.gid);
    fchmodSync(fd, mode);
    futimesSync(fd, seconds, seconds);
  } finally {
    closeSync(fd);
  }
}

function replaceWithSync(target: string): void {
  // No exception for the common case (nothing there): building one per file is measurable.
  const st = lstatSync(fsPath(target), { throwIfNoEntry: false });
  if (st === undefined) return;
  if (st.isDirectory()) rmSync(fsPath(target), { recursive: true, force: true });
  else unlinkSync(fsPath(target));
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

async function replaceWith(target: string, wantDir: boolean): Promise<boolean> {
  const st = await lstatOrUndefined(target);
  if (st === undefined) return false;
  if (wantDir && st.isDirectory()) return true;
  // Docker's untar: anything else at the path is removed first (a directory included).
  await rm(fsPath(target), { recursive: true, force: true });
  return false;
}

async function writeEntry(state: WriteState, entry: CopyEntry, target: string): Promise<void> {
  state.signal?.throwIfAborted();
  const seconds = entry.mtimeMs / 1000;
  switch (entry.type) {
    case 'dir': {
      const kept = await replaceWith(target, true);
      if (!kept) {
        await mkdir(fsPath(target), { mode: 0o700 });
        state.madeDirs.add(target);
      }
      await state.owners.set(target, ownerFor(state, entry), modeFor(state, entry));
      await chmod(fsPath(target), modeFor(state, entry));
      state.dirTimes.push({ path: target, mtimeMs: entry.mtimeMs });
      return;
    }
    case 'file': {
      await replaceWith(target, false);
      const first = entry.hardLinkKey === undefined ? undefined : state.links.get(entry.hardLinkKey);
      if (first !== undefined) {
        await link(fsPath(first), fsPath(target));
        return;
      }
      // A reflink where the filesystem can (btrfs, XFS), else copy_file_range in the kernel.
      await copyFile(
        fsPath(entry.sourcePath),
        fsPath(target),
        constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL,
      );
      await state.owners.set(target, ownerFor(state, entry), modeFor(state, entry));
      await chmod(fsPath(target), modeFor(state, entry));
      await utimes(fsPath(target), seconds, seconds);
      if (entry.hardLinkKey !== undefined) state.links.set(entry.hardLinkKey, target);
      return;
    }
    case 'symlink': {
      await replaceWith(target, false);
      await symlink(fsPath(entry.linkTarget ?? ''), fsPath(target));
      await state.owners.set(target, ownerFor(state, entry), -1);
      await lutimes(fsPath(target), seconds, seconds);
      return;
    }
    case 'archive':
      await extractArchive(entry.sourcePath, target, {
        what: `ADD ${entry.sourceName}`,
        ...(state.signal ? { signal: state.signal } : {}),
      });
      return;
  }
}

/**
 * Applies a plan onto `rootfs` (a host directory holding the stage's root filesystem).
 * Rules (Docker's): implicit parent directories 0755 owned by root (or the --chown user);
 * entries owned by root unless --chown, except that sources from a stage or image keep their
 * owners; the source's mode unless --chmod; source mtimes kept;
 * an existing file overwritten; a type change replaces what was there. Archives (ADD) keep the
 * owners, modes and times stored in them.
 */
export async function applyCopy(
  plan: CopyPlan,
  rootfs: string,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const state: WriteState = {
    owner: options.chown ?? ROOT,
    chowned: options.chown !== undefined,
    chmod: options.chmod === undefined ? undefined : parseChmod(options.chmod, `${plan.instruction} --chmod`),
    links: new Map(),
    dirTimes: [],
    deferred: offlineUsable(plan, options) ? [] : undefined,
    madeDirs: new Set(),
    signal: options.signal,
    owners: new OwnerSetter(options.rootless),
    rootless: options.rootless,
    contents: options.contents,
  };
  const setDirOwner = (path: string, owner: Owner) => state.owners.set(path, owner, 0o755);
  let written = 0;
  let batch: Promise<void>[] = [];
  if (plan.nothingSelected === true) return { destHostPath: rootfs, destInRoot: plan.dest, written: 0 };
  try {
    const dest = await resolveInRoot(rootfs, plan.dest, { followFinal: true });
    const destSt = dest.missing ? undefined : await lstatOrUndefined(dest.hostPath);
    const single = plan.singleFile ? plan.entries[0] : undefined;
    if (single !== undefined && !(destSt?.isDirectory() ?? false)) {
      // The file becomes the destination itself. Its parent is resolved (symlinks followed
      // inside the rootfs); the last component is replaced, never written through.
      const parentPath = posix.dirname(plan.dest);
      const parentHost = await mkdirInRoot(rootfs, parentPath, state.owner, setDirOwner);
      const parentInRoot = (await resolveInRoot(rootfs, parentPath, { followFinal: true })).inRoot;
      const target = below(parentHost, posix.basename(plan.dest));
      await writeEntry(state, single, target);
      await state.owners.finish();
      return {
        destHostPath: target,
        destInRoot: posix.join(parentInRoot, posix.basename(plan.dest)),
        written: 1,
      };
    }
    if (destSt !== undefined && !destSt.isDirectory()) {
      throw new StratumError(
        'BUILD_FAILED',
        `${plan.instruction} to ${plan.dest}: ${dest.inRoot} exists and is not a directory`,
      );
    }
    const destHost =
      destSt === undefined ? await mkdirInRoot(rootfs, plan.dest, state.owner, setDirOwner) : dest.hostPath;
    if (destSt === undefined) state.madeDirs.add(destHost);
    const destInRoot = (await resolveInRoot(rootfs, plan.dest, { followFinal: true })).inRoot;
    // Directories this apply created or checked: their children can be joined without
    // following anything. A parent not in the set is checked, so even a hand-made plan whose
    // parents were not listed cannot write through a symlink.
    const realDirs = new Set<string>([destHost]);
    const batchTargets = new Set<string>();
    let sinceYield = 0;
    const flush = async () => {
      await Promise.all(batch);
      batch = [];
      batchTargets.clear();
    };
    for (const entry of plan.entries) {
      const target = entry.destRelPath === '' ? destHost : below(destHost, entry.destRelPath);
      const parent = dirname(target);
      if (entry.destRelPath !== '' && !realDirs.has(parent)) {
        await flush();
        const st = await lstatOrUndefined(parent);
        if (st === undefined || !st.isDirectory()) {
          throw new StratumError(
            'UNSAFE_PATH',
            `${plan.instruction} ${entry.sourceName}: parent of ${entry.destRelPath} is not a directory created by this copy`,
          );
        }
        realDirs.add(parent);
      }
      const plainFile = entry.type === 'file' && entry.hardLinkKey === undefined;
      if (
        plainFile &&
        entry.size <= SMALL_FILE &&
        state.deferred !== undefined &&
        // New: below a directory this copy made (no destination is written twice), or not there.
        (state.madeDirs.has(parent) || lstatSync(fsPath(target), { throwIfNoEntry: false }) === undefined)
      ) {
        state.deferred.push({ entry, target });
        written++;
        continue;
      }
      if (plainFile && entry.size <= SMALL_FILE) {
        if (batchTargets.has(target)) await flush();
        state.signal?.throwIfAborted();
        replaceWithSync(target);
        const owner = ownerFor(state, entry);
        const direct = state.owners.direct(owner);
        writeSmallFileSync(
          entry.sourcePath,
          state.contents?.take(entry.sourcePath),
          target,
          direct && isRoot ? owner : undefined,
          modeFor(state, entry),
          entry.mtimeMs / 1000,
        );
        if (!direct) state.owners.queue(target, owner, modeFor(state, entry));
        written++;
        if (++sinceYield >= YIELD_EVERY) {
          sinceYield = 0;
          await yieldToEventLoop();
        }
        continue;
      }
      // Large files with distinct targets are independent: copy them a few at a time.
      // Anything else (directories, links, hard links, a second write to one path) waits.
      const parallel = plainFile;
      if (!parallel || batchTargets.has(target) || batch.length >= COPY_CONCURRENCY) await flush();
      if (parallel) {
        batchTargets.add(target);
        const pending = writeEntry(state, entry, target);
        // Handled here so a failure while other work is awaited is not an unhandled rejection;
        // flush() (or the catch below) still sees it.
        pending.catch(() => undefined);
        batch.push(pending);
      } else {
        await writeEntry(state, entry, target);
      }
      if (entry.type === 'dir') realDirs.add(target);
      written++;
    }
    await flush();
    // From here on, paths are the upperdir's when the mount was let go of.
    const onDisk =
      state.deferred !== undefined && state.deferred.length > 0 && options.offline !== undefined
        ? await writeDeferred(state, rootfs, options.offline)
        : (path: string) => path;
    // Directory times last: writing their children changed them.
    for (const { path, mtimeMs } of state.dirTimes.reverse())
      await utimes(fsPath(onDisk(path)), mtimeMs / 1000, mtimeMs / 1000);
    // Last: once a directory is another id's, this process may no longer write into it.
    await state.owners.finish();
    return { destHostPath: destHost, destInRoot, written };
  } catch (error) {
    await Promise.allSettled(batch);
    throw ioError(plan, 'cannot write', error);
  }
}

/**
 * Whether new small files may be left for the upperdir: as root (a rootless copy gives owners
 * through paths of the mount, see RootlessOwners), and when no destination is written twice (the
 * later write must win, in order).
 */
function offlineUsable(plan: CopyPlan, options: ApplyOptions): boolean {
  if (options.offline === undefined || options.rootless !== undefined || !isRoot) return false;
  const seen = new Set<string>();
  for (const entry of plan.entries) {
    if (seen.has(entry.destRelPath)) return false;
    seen.add(entry.destRelPath);
  }
  return true;
}

/**
 * Writes the deferred files into the upperdir (OfflineUpper) and returns how a path of the
 * mount maps to the upperdir. Each file's directory is in the upperdir first: made by this copy
 * through the mount, or an existing one the kernel copies up (an lchown to its own owner is a
 * change of attributes that copies up and changes nothing else; the file then changes its mtime,
 * as a create through the mount would).
 */
async function writeDeferred(
  state: WriteState,
  rootfs: string,
  offline: OfflineUpper,
): Promise<(path: string) => string> {
  const deferred = state.deferred ?? [];
  const inUpper = (path: string): string => {
    if (path !== rootfs && !path.startsWith(`${rootfs}/`))
      throw new StratumError('UNSAFE_PATH', `${path} is not below the rootfs ${rootfs}`);
    return offline.upper + path.slice(rootfs.length);
  };
  const parents = new Set(deferred.map(({ target }) => dirname(target)));
  for (const parent of parents) {
    if (lstatSync(fsPath(inUpper(parent)), { throwIfNoEntry: false }) !== undefined) continue;
    const st = lstatSync(fsPath(parent));
    lchownSync(fsPath(parent), st.uid, st.gid);
    if (lstatSync(fsPath(inUpper(parent)), { throwIfNoEntry: false })?.isDirectory() !== true)
      throw new StratumError('IO', `${parent}: the overlay did not copy the directory up`);
  }
  await offline.detach();
  let sinceYield = 0;
  for (const { entry, target } of deferred) {
    state.signal?.throwIfAborted();
    writeSmallFileSync(
      entry.sourcePath,
      state.contents?.take(entry.sourcePath),
      inUpper(target),
      ownerFor(state, entry),
      modeFor(state, entry),
      entry.mtimeMs / 1000,
    );
    if (++sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await yieldToEventLoop();
    }
  }
  return inUpper;
}
