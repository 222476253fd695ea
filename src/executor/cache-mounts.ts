import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errnoCode } from '../errors.js';
import { processIdentity } from '../util/leases.js';
import type { RootlessOwners } from './context/apply.js';

/**
 * `RUN --mount=type=cache` directories, as BuildKit keeps them:
 *
 * - A cache is one id **with** its uid, gid and mode: BuildKit makes the mount's base with a
 *   mkdir of that owner and mode and keys the persistent directory by id and that base
 *   (solver/llbsolver/mounts: `id + ":" + ref.ID()`), so one id used under two uids is two
 *   caches, each owned as its first user asked.
 * - `sharing=shared` (the default): every step that asks gets the same directory, at once.
 * - `sharing=locked`: one step at a time; the others wait for it (in this and other processes).
 * - `sharing=private`: a step gets a directory no one else is using, the first free instance
 *   (`<key>`, `<key>-1`, ...), a new one when all are in use.
 *
 * Locks are files created exclusively next to the directory, naming their holder as
 * `<pid>-<start time>` (oci/leases.ts): one whose process is gone (SIGKILL) is taken over.
 *
 * A cache an imported cache holds (`--cache-from` of an export made with `mounts=true`) is
 * restored when its directory is missing or empty, and only then: a directory with content is
 * this machine's own and is used as it is. The contents are unpacked into a directory beside
 * it (`.restore-<holder>-<random>`), given the cache's owner and mode, and renamed into place,
 * so no step ever sees half a restore; a killed restore's directory is removed by the next one.
 */

export interface CacheMountRequest {
  readonly id: string;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  readonly sharing: 'shared' | 'private' | 'locked';
}

export interface CacheMountUse {
  /** The host directory to bind at the mount's target. */
  readonly dir: string;
  /** Ends the use: lets a waiting `locked` step in, frees a `private` instance. */
  readonly release: () => Promise<void>;
}

/** How often a `locked` step looks again while another holds the cache. */
const LOCK_POLL_MS = 50;

/** Lock files of this process, removed if it exits while holding them. */
const heldLocks = new Set<string>();
process.on('exit', () => {
  for (const file of heldLocks) {
    try {
      unlinkSync(file);
    } catch {
      // Already gone.
    }
  }
});

/** The directory name of a cache: its id, owner and mode, hashed. */
export function cacheMountKey(request: Omit<CacheMountRequest, 'sharing'>): string {
  return createHash('sha256')
    .update(`${request.id}\0${request.uid}:${request.gid}\0${request.mode.toString(8)}`)
    .digest('hex')
    .slice(0, 32);
}

/** Puts a cache's restored contents into an empty directory (made by the caller); false: none. */
export type CacheMountFill = (into: string) => Promise<boolean>;

interface AcquireOptions {
  readonly rootless?: RootlessOwners;
  readonly signal?: AbortSignal;
  /** Where a missing or empty cache gets its contents from (an imported cache's export). */
  readonly fill?: CacheMountFill;
}

export async function acquireCacheMount(
  root: string,
  request: CacheMountRequest,
  options: AcquireOptions = {},
): Promise<CacheMountUse> {
  const key = cacheMountKey(request);
  await mkdir(root, { recursive: true });
  switch (request.sharing) {
    case 'shared': {
      const dir = join(root, key);
      await ensureDirectory(dir, request, options.rootless, options.fill);
      return { dir, release: () => Promise.resolve() };
    }
    case 'locked': {
      const dir = join(root, key);
      const lock = `${dir}.lock`;
      while (!(await tryLock(lock))) {
        options.signal?.throwIfAborted();
        await sleep(LOCK_POLL_MS, undefined, options.signal ? { signal: options.signal } : {});
      }
      return lockedUse(dir, lock, request, options);
    }
    case 'private': {
      for (let instance = 0; ; instance++) {
        const dir = join(root, instance === 0 ? key : `${key}-${instance}`);
        const lock = `${dir}.lock`;
        if (await tryLock(lock)) return lockedUse(dir, lock, request, options);
      }
    }
  }
}

async function lockedUse(
  dir: string,
  lock: string,
  request: CacheMountRequest,
  options: AcquireOptions,
): Promise<CacheMountUse> {
  const release = async (): Promise<void> => {
    heldLocks.delete(lock);
    await rm(lock, { force: true });
  };
  try {
    await ensureDirectory(dir, request, options.rootless, options.fill);
  } catch (error) {
    await release();
    throw error;
  }
  return { dir, release };
}

/**
 * Creates the cache directory with its owner and mode the first time it is used; with `fill`,
 * a missing or empty one gets the imported contents first.
 */
async function ensureDirectory(
  dir: string,
  request: Omit<CacheMountRequest, 'sharing'>,
  rootless: RootlessOwners | undefined,
  fill?: CacheMountFill,
): Promise<void> {
  const owner = { uid: request.uid, gid: request.gid };
  // Rootless, root is ourselves and other owners are those the build's user namespace maps
  // (refused, naming what is missing, where it maps none).
  if (rootless !== undefined && (owner.uid !== 0 || owner.gid !== 0)) rootless.check(owner);
  let exists = true;
  try {
    await stat(dir);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
    exists = false;
  }
  if (exists && (fill === undefined || (await readdir(dir)).length > 0)) return;
  if (fill !== undefined && (await restoreInto(dir, request, rootless, fill))) return;
  if (exists) return;
  await makeOwnedDirectory(dir, request, rootless);
}

async function makeOwnedDirectory(
  dir: string,
  request: Omit<CacheMountRequest, 'sharing'>,
  rootless: RootlessOwners | undefined,
): Promise<void> {
  const owner = { uid: request.uid, gid: request.gid };
  await mkdir(dir, { recursive: true });
  await chmod(dir, request.mode);
  if (rootless === undefined) await chown(dir, owner.uid, owner.gid);
  else if (owner.uid !== 0 || owner.gid !== 0)
    await rootless.give([{ op: 'chown', path: dir, ...owner, mode: request.mode }]);
}

const RESTORE_PREFIX = '.restore-';

/**
 * Fills a new directory beside `dir`, then renames it over `dir` (rename(2) replaces an empty
 * directory in one step; a non-empty one, filled meanwhile by someone else, stays and ours goes).
 * True when `dir` now holds the restored contents.
 */
async function restoreInto(
  dir: string,
  request: Omit<CacheMountRequest, 'sharing'>,
  rootless: RootlessOwners | undefined,
  fill: CacheMountFill,
): Promise<boolean> {
  const parent = join(dir, '..');
  await removeAbandonedRestores(parent);
  const me = processIdentity() ?? `${process.pid}-0`;
  const temp = join(parent, `${RESTORE_PREFIX}${me}-${randomBytes(4).toString('hex')}`);
  try {
    await makeOwnedDirectory(temp, request, rootless);
    if (!(await fill(temp))) return false;
    // The unpacked tar may have set the top directory's mode; the cache's own wins.
    await chmod(temp, request.mode);
    try {
      await rename(temp, dir);
      return true;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return true; // someone else's contents won
      throw error;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** Restores that a killed build left half done (their holder is gone). */
async function removeAbandonedRestores(root: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^\.restore-(\d+-\d+)-[0-9a-f]+$/.exec(name);
    if (match === null || holderIsLive(match[1]!)) continue;
    await rm(join(root, name), { recursive: true, force: true });
  }
}

/** Takes `lock` if it is free or its holder is gone; false while a live process holds it. */
async function tryLock(lock: string): Promise<boolean> {
  const me = processIdentity() ?? `${process.pid}-0`;
  for (;;) {
    try {
      await writeFile(lock, me, { flag: 'wx' });
      heldLocks.add(lock);
      return true;
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
    let holder: string;
    try {
      holder = (await readFile(lock, 'utf8')).trim();
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') continue; // released meanwhile
      throw error;
    }
    if (holder === '' || holderIsLive(holder)) return false;
    // A dead holder's lock: remove it and try again (another taker may win the race; fine).
    await rm(lock, { force: true });
  }
}

function holderIsLive(holder: string): boolean {
  const match = /^(\d+)-(\d+)$/.exec(holder);
  if (match === null) return false;
  const identity = processIdentity(Number(match[1]));
  return identity !== undefined && (identity === holder || identity.endsWith('-0'));
}
