import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { StratumError, errnoCode } from '../errors.js';
import { ownerIsLive, processIdentity, waitForSweeps, withSweep } from '../util/leases.js';
import { resolvedNow } from '../util/now.js';
import { removeTree } from '../util/remove-tree.js';
import { trace } from '../util/trace.js';
import { extractLayerAuto } from './extract.js';
import { FlushJournal } from './flush-journal.js';
import { runOverlayHelper } from './overlay-helper.js';

/**
 * The unpacked-layer stores under a cache dir. Root's layers carry `trusted.overlay.opaque`, a
 * rootless user's `user.overlay.opaque` (what overlay reads with `userxattr`), so the two never
 * share a directory.
 */

/**
 * Every layer unpacked once, in overlayfs's own form, keyed by its DiffID:
 *
 *   <root>/layers/<hex>/        the layer's files (whiteouts as 0/0 devices, opaque xattrs)
 *   <root>/tmp/<random>/         an extraction in progress; renamed into layers/ when whole
 *   <root>/sessions/<pid>-<id>/  one per running build: its mounts, upperdirs and `leases`
 *   <root>/unflushed/            layers placed without waiting for the disk (flush-journal.ts)
 *
 * A layer directory appears only by rename(2) of a complete extraction, so a crash never leaves
 * a half layer visible (what it leaves in tmp/ is removed by the next build or `cache prune`).
 * Nor a torn one: the rename does not wait for the layer's bytes to reach the disk, but it is
 * written down first in the flush journal, and the first build after a machine crash removes
 * what the crashed boot placed and no flush covered (extracted again from its blob when next
 * needed). Where the kernel gives no boot id, each layer is flushed (syncfs) before its rename.
 * A build records each DiffID it uses in its session's `leases` before looking at the layer,
 * and `cache prune` keeps leased layers of live sessions.
 */
export class UnpackedLayers {
  private readonly pending = new Map<string, Promise<string>>();
  private readonly leased = new Set<string>();
  private mountCount = 0;

  private constructor(
    readonly root: string,
    readonly session: string,
    /** `trusted.overlay.opaque` as root, `user.overlay.opaque` in a user namespace. */
    readonly opaqueXattr: string,
    /** Where placements are written down; undefined: each layer is flushed before its rename. */
    private readonly journal: FlushJournal | undefined,
  ) {}

  static async open(root: string, opaqueXattr: string): Promise<UnpackedLayers> {
    // Synchronous calls for the directories and listings: a build opens the store on its first
    // step's path, where each thread-pool round trip costs more than the call (0.3-1 ms here).
    for (const name of ['layers', 'tmp', 'sessions']) mkdirSync(join(root, name), { recursive: true });
    await removeStaleSessions(root);
    const journal = await FlushJournal.open(join(root, UNFLUSHED));
    if (journal !== undefined) {
      for (const earlier of await journal.unflushedFromEarlierBoots()) {
        await dropUnpackedLayers(root, new Set(earlier.names));
        await journal.forget(earlier.bootId);
      }
    }
    // Named with the process's start time: a PID reused (after a reboot, say) is not this build.
    const owner = processIdentity() ?? `${process.pid}-0`;
    const session = join(root, 'sessions', `${owner}-${randomBytes(6).toString('hex')}`);
    mkdirSync(session);
    appendFileSync(join(session, 'leases'), '');
    return new UnpackedLayers(root, session, opaqueXattr, journal);
  }

  /**
   * Whether a layer may be placed before its bytes are on disk (the journal covers a crash):
   * then the writable overlay is mounted `volatile`, and its unmount waits for no flush.
   */
  get placesUnflushed(): boolean {
    return this.journal !== undefined;
  }

  pathOf(diffId: string): string {
    return join(this.root, 'layers', hexOf(diffId));
  }

  /**
   * Work on this session's mount directories under way that nobody waits for (removeLater, a
   * view mounted while its step runs); sweep and close wait for it first: a mount made after
   * they read mountinfo would be left mounted, and its directory could not be removed (EBUSY).
   */
  private readonly unfinished = new Set<Promise<void>>();

  /** Makes sweep and close wait for `work` (whose failure is theirs to clean up after). */
  finishBeforeClosing(work: Promise<unknown>): void {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.unfinished.add(settled);
    void settled.then(() => this.unfinished.delete(settled));
  }

  /**
   * Removes a mount directory of this session that is unmounted and done with, without making
   * the caller wait. A failure is left to sweep or close, which remove whatever is left.
   */
  removeLater(dir: string): void {
    this.finishBeforeClosing(removeTree(dir));
  }

  /** A fresh directory in this session (for one mount's upperdir, workdir and links). */
  async newMountDir(): Promise<string> {
    const dir = join(this.session, String(this.mountCount++));
    // Synchronous, as the mount directory's own entries are (OverlayMounts.prepare).
    mkdirSync(dir);
    return Promise.resolve(dir);
  }

  /**
   * Records that this build uses the layer, then waits out a running `cache prune` (see
   * pruneUnpackedLayers): after this, whether the layer exists can be trusted.
   */
  private async lease(diffId: string): Promise<void> {
    if (!this.leased.has(diffId)) {
      this.leased.add(diffId);
      appendFileSync(join(this.session, 'leases'), `${hexOf(diffId)}\n`);
    }
    await waitForSweeps(join(this.root, SWEEPS));
  }

  /**
   * The layer's directory, extracting it first if no build did yet. `name` is what errors call
   * the layer (its blob digest, which a user finds in the manifest); the DiffID by default.
   */
  async ensure(diffId: string, open: () => Readable, signal?: AbortSignal, name = diffId): Promise<string> {
    const running = this.pending.get(diffId);
    if (running !== undefined) return running;
    const promise = this.unpack(diffId, open, name, signal);
    this.pending.set(diffId, promise);
    promise.catch(() => this.pending.delete(diffId));
    return promise;
  }

  private async unpack(
    diffId: string,
    open: () => Readable,
    name: string,
    signal?: AbortSignal,
  ): Promise<string> {
    await this.lease(diffId);
    const target = this.pathOf(diffId);
    if (await exists(target)) return target;
    const temp = join(this.root, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(temp);
    try {
      await chmod(temp, 0o755);
      trace('unpack: extracting');
      await extractLayerAuto(open(), temp, {
        layerName: name,
        overlayOpaqueXattr: this.opaqueXattr,
        ...(signal ? { signal } : {}),
      });
      trace('unpack: extracted');
      await this.beforePlacing(diffId, temp);
      await this.place(temp, target);
      trace('unpack: placed');
    } finally {
      await removeTree(temp);
    }
    return target;
  }

  /**
   * A layer torn by a power loss (files of zero bytes under the right names) would be a lower of
   * every later build, silently: containerd's bug class #5854/#8895 (its fix, `sync_fs` on
   * unpack, is opt-in there). So before a layer gets its name, either the journal has it (and
   * the first build after a crash removes it), or its filesystem is flushed (~0.5 s after a
   * 464 MB base's extraction).
   */
  private async beforePlacing(diffId: string, dir: string): Promise<void> {
    if (this.journal !== undefined) await this.journal.record(hexOf(diffId));
    else await runOverlayHelper([{ op: 'syncfs', path: dir }]);
  }

  /** Moves a whole layer directory into place; another build's identical copy may have won. */
  private place(dir: string, target: string): Promise<void> {
    return resolvedNow(() => {
      try {
        renameSync(dir, target);
      } catch (error) {
        if (!['ENOTEMPTY', 'EEXIST'].includes(errnoCode(error) ?? '')) throw error;
      }
    });
  }

  /**
   * A committed upperdir becomes the unpacked layer of the DiffID written from it (no
   * extraction). Returns false when that layer was there already (the caller removes `dir`).
   */
  async adopt(diffId: string, dir: string): Promise<boolean> {
    await this.lease(diffId);
    const target = this.pathOf(diffId);
    if (await exists(target)) return false;
    // Without the journal the upper was mounted without `volatile`: its unmount flushed it.
    if (this.journal !== undefined) await this.journal.record(hexOf(diffId));
    await this.place(dir, target);
    return !(await exists(dir));
  }

  /**
   * Once a build is over: a flush of what this boot placed unflushed, in the background, when
   * the journal wants one (placements no flush covers; at most one per 30 s; the helper forks it,
   * not Node).
   */
  private async flushLater(): Promise<void> {
    if (this.journal === undefined || !(await this.journal.wantsFlush())) return;
    await runOverlayHelper([{ op: 'flushmark', path: this.root, mark: this.journal.flushedMark }]);
  }

  /**
   * Unmounts what this session mounted and removes its mount directories, keeping the session
   * (its leases) for the next build of the same process (`build --watch`).
   */
  async sweep(): Promise<void> {
    await Promise.all(this.unfinished);
    await this.flushLater();
    await unmountBelow(this.session);
    for (const name of await readdir(this.session))
      if (name !== 'leases') await removeTree(join(this.session, name));
  }

  /** Unmounts what this session mounted and removes its directory. */
  async close(): Promise<void> {
    await Promise.all(this.unfinished);
    await this.flushLater();
    await unmountBelow(this.session);
    await removeTree(this.session);
  }
}

function hexOf(diffId: string): string {
  const hex = diffId.startsWith('sha256:') ? diffId.slice('sha256:'.length) : diffId;
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new StratumError('INVALID_IMAGE', `bad DiffID ${diffId}`);
  return hex;
}

/** Synchronous (one stat(2)): asked at every mount and commit, on the step's path. */
function exists(path: string): Promise<boolean> {
  return resolvedNow(() => statSync(path, { throwIfNoEntry: false }) !== undefined);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === 'EPERM';
  }
}

/** A session `<pid>-<start>-<random>` (or, as earlier versions named it, `<pid>-<random>`) still running. */
function sessionIsLive(name: string): boolean {
  if (/^\d+-\d+-[0-9a-f]+$/.test(name)) return ownerIsLive(name);
  const pid = Number(name.split('-')[0]);
  return Number.isInteger(pid) && pid > 0 && pidAlive(pid);
}

/** Mount points at or below `dir` in this mount namespace, deepest first. */
export async function mountsBelow(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    // mountinfo escapes space, tab, newline and backslash as octal.
    const point = field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
      String.fromCharCode(parseInt(octal, 8)),
    );
    if (point === dir || point.startsWith(`${dir}/`)) found.push(point);
  }
  return found.sort((a, b) => b.length - a.length);
}

async function unmountBelow(dir: string): Promise<void> {
  const points = await mountsBelow(dir);
  if (points.length > 0) await runOverlayHelper(points.map((target) => ({ op: 'umount', target })));
}

/** Sessions of builds that are gone (killed): their mounts, upperdirs and leases. */
function listOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function removeStaleSessions(root: string): Promise<void> {
  for (const name of listOrEmpty(join(root, 'sessions'))) {
    if (sessionIsLive(name)) continue;
    const dir = join(root, 'sessions', name);
    await unmountBelow(dir);
    await removeTree(dir);
  }
  for (const name of listOrEmpty(join(root, 'tmp'))) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) continue;
    await removeTree(join(root, 'tmp', name));
  }
}

/** DiffIDs (hex) leased by live sessions: `cache prune` keeps these. */
export async function leasedLayers(root: string): Promise<Set<string>> {
  const leased = new Set<string>();
  for (const name of await readdir(join(root, 'sessions')).catch(() => [])) {
    if (!sessionIsLive(name)) continue;
    const text = await readFile(join(root, 'sessions', name, 'leases'), 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line !== '') leased.add(line);
  }
  return leased;
}

/**
 * Removes unpacked layers no live build leases, and what killed builds left. It runs under a
 * sweep marker (oci/leases.ts): a build leases a layer, then waits while a sweep runs, and
 * only then looks for the layer, so a layer is either leased before the sweep reads the leases
 * or looked for after the sweep is over. Each layer is renamed aside before it is removed, so a
 * prune killed half way never leaves half a layer under `layers/`.
 */
export async function pruneUnpackedLayers(
  root: string,
  options: { readonly beforeRemove?: (dir: string) => Promise<void> } = {},
): Promise<number> {
  await mkdir(join(root, 'sessions'), { recursive: true }).catch(() => undefined);
  await removeStaleSessions(root);
  return removeUnleased(root, undefined, options.beforeRemove);
}

/**
 * Removes the named layers (hex), as a prune does: what an earlier boot placed and no flush
 * covered. A layer a live build leases is kept: that build opened the store after the crash,
 * so it removed the torn copy itself before it leased, and what it leases is a new one.
 */
async function dropUnpackedLayers(root: string, names: ReadonlySet<string>): Promise<void> {
  if (names.size > 0) await removeUnleased(root, names);
}

async function removeUnleased(
  root: string,
  only: ReadonlySet<string> | undefined,
  beforeRemove?: (dir: string) => Promise<void>,
): Promise<number> {
  return withSweep(join(root, SWEEPS), async () => {
    let removed = 0;
    const leased = await leasedLayers(root);
    const names = only === undefined ? await readdir(join(root, 'layers')).catch(() => []) : [...only];
    for (const hex of names) {
      // Names from a journal are checked: a line torn by a crash must not name another path.
      if (leased.has(hex) || (only !== undefined && !/^[0-9a-f]{64}$/.test(hex))) continue;
      // tmp/ names carry their owner's PID; this one is removed by the next cleanup if we die.
      const aside = join(root, 'tmp', `${process.pid}-prune-${hex}`);
      try {
        await rename(join(root, 'layers', hex), aside);
      } catch {
        continue; // another prune took it
      }
      await beforeRemove?.(aside);
      await removeTree(aside);
      removed++;
    }
    return removed;
  });
}

/** Where `cache prune` marks that it is sweeping (see oci/leases.ts). */
const SWEEPS = 'sweeps';
/** The flush journal's directory (flush-journal.ts). */
const UNFLUSHED = 'unflushed';
