import { lstatSync, mkdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { runOverlayHelper } from '../../snapshot/overlay-helper.js';
import { resolveInRoot } from './root-path.js';

/**
 * Mount points that the step needs but the rootfs lacks (`/proc` in a scratch image, `/etc/hosts`,
 * a cache mount's target...) have to exist as real entries before anything can be mounted on
 * them. This module creates exactly those, remembers what it created and the mtimes of the
 * directories it touched, and undoes both afterwards, so the snapshot taken after the step sees
 * only what the command did (Docker's classic builder leaves nothing either). The calls are
 * synchronous: a handful of metadata operations on every RUN's path, each of which cost a
 * thread-pool round trip when asynchronous.
 */
export type MountPointType = 'directory' | 'file';

interface CreatedEntry {
  readonly path: string;
  readonly type: MountPointType;
  readonly ino: bigint;
}

interface TouchedDirectory {
  /** mtime (ns since the epoch) before we created anything in it. */
  readonly before: bigint;
  /** mtime right after the last entry we created in it; undefined until setup ends. */
  afterSetup?: bigint;
  /** Whether we created this directory ourselves. */
  readonly created: boolean;
}

export class MountPointLedger {
  private readonly created: CreatedEntry[] = [];
  private readonly touched = new Map<string, TouchedDirectory>();

  constructor(private readonly rootfs: string) {}

  /**
   * Makes sure `target` (absolute, inside the rootfs) exists as `type` and returns its host path,
   * resolved chroot-style so that a symlink in the image never leads outside the rootfs.
   */
  async ensure(target: string, type: MountPointType): Promise<string> {
    const resolved = await resolveInRoot(this.rootfs, posix.normalize(target));
    if (resolved.missing.length === 0) {
      const stats = lstatSync(resolved.existing);
      if (type === 'directory' && !stats.isDirectory()) {
        throw new StratumError(
          'BUILD_FAILED',
          `cannot mount a directory on ${target}: it is not a directory in the image`,
        );
      }
      if (type === 'file' && stats.isDirectory()) {
        throw new StratumError(
          'BUILD_FAILED',
          `cannot mount a file on ${target}: it is a directory in the image`,
        );
      }
      return resolved.existing;
    }
    let parent = resolved.existing;
    for (const [index, name] of resolved.missing.entries()) {
      const path = posix.join(parent, name);
      const entryType: MountPointType = index === resolved.missing.length - 1 ? type : 'directory';
      this.noteParent(parent);
      if (entryType === 'directory') mkdirSync(path, { mode: 0o755 });
      else writeFileSync(path, '', { mode: 0o644, flag: 'wx' });
      const stats = lstatSync(path, { bigint: true });
      this.created.push({ path, type: entryType, ino: stats.ino });
      if (entryType === 'directory') this.touched.set(path, { before: stats.mtimeNs, created: true });
      parent = path;
    }
    return parent;
  }

  /** Call once every mount point exists: records each touched directory's mtime as we left it. */
  sealSetup(): void {
    for (const [path, dir] of this.touched) dir.afterSetup = lstatSync(path, { bigint: true }).mtimeNs;
  }

  /**
   * Removes what ensure() created (deepest first, and only entries that are still what we made:
   * an empty directory, an empty file with the same inode), then gives each touched directory
   * back its mtime: the original one when the step did not change the directory, else the one
   * the step left. ctime cannot be restored from user space; it stays changed.
   */
  async restore(): Promise<void> {
    const afterStep = new Map<string, bigint>();
    for (const path of this.touched.keys()) {
      const mtime = mtimeOf(path);
      if (mtime !== undefined) afterStep.set(path, mtime);
    }
    const removed = new Set<string>();
    for (const entry of [...this.created].reverse()) {
      if (removeIfUnchanged(entry)) removed.add(entry.path);
    }
    const fixes: MtimeFix[] = [];
    for (const [path, dir] of this.touched) {
      if (removed.has(path)) continue;
      const stepMtime = afterStep.get(path);
      if (stepMtime === undefined) continue;
      // No step ran (setup failed) or the step left the directory alone: back to the original.
      const untouchedByStep = dir.afterSetup === undefined || stepMtime === dir.afterSetup;
      const wanted = !dir.created && untouchedByStep ? dir.before : stepMtime;
      const now = mtimeOf(path);
      if (now !== undefined && now !== wanted) fixes.push({ path, mtimeNs: wanted });
    }
    await setMtimes(fixes);
  }

  private noteParent(path: string): void {
    if (this.touched.has(path)) return;
    const stats = lstatSync(path, { bigint: true });
    this.touched.set(path, { before: stats.mtimeNs, created: false });
  }
}

function removeIfUnchanged(entry: CreatedEntry): boolean {
  let stats;
  try {
    stats = lstatSync(entry.path, { bigint: true });
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return false;
    throw error;
  }
  if (stats.ino !== entry.ino) return false;
  try {
    if (entry.type === 'directory') {
      if (!stats.isDirectory()) return false;
      rmdirSync(entry.path);
    } else {
      if (!stats.isFile() || stats.size !== 0n) return false;
      unlinkSync(entry.path);
    }
    return true;
  } catch (error) {
    // Not empty: the step wrote there, so it is the step's change now. Busy: still mounted
    // somewhere, which must not happen; keep it rather than fail the build over an empty entry.
    if (errnoCode(error) === 'ENOTEMPTY' || errnoCode(error) === 'EEXIST' || errnoCode(error) === 'EBUSY')
      return false;
    throw error;
  }
}

function mtimeOf(path: string): bigint | undefined {
  try {
    return lstatSync(path, { bigint: true }).mtimeNs;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

interface MtimeFix {
  readonly path: string;
  readonly mtimeNs: bigint;
}

/**
 * Node's fs.utimes takes seconds as a double and loses the nanoseconds, so the mtimes are set
 * by utimensat(2) with exact timespecs, all in one batch to the process's long-lived helper
 * (snapshot/overlay-helper.ts; a Perl process of its own per step cost 15-30 ms). atime is left
 * alone (UTIME_OMIT) and a symlink is never followed (AT_SYMLINK_NOFOLLOW).
 */
async function setMtimes(fixes: readonly MtimeFix[]): Promise<void> {
  if (fixes.length === 0) return;
  try {
    await runOverlayHelper(fixes.map(({ path, mtimeNs }) => ({ op: 'mtime', path, mtimeNs })));
  } catch (error) {
    throw new StratumError('IO', `could not restore directory mtimes after the step: ${String(error)}`, {
      cause: error,
    });
  }
}
