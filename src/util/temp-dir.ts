import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, readlink, rm, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { errnoCode } from '../errors.js';
import { cacheDirLayout, defaultCacheDir } from './cache-dir.js';
import { makeDirectoriesSync } from './directories.js';
import { isAbandoned, ownedName, ownerOf } from './owner.js';

/**
 * Where stratum's temporary state lives: `$STRATUM_TMPDIR`, else `tmp/` in the cache directory,
 * never loose in the system /tmp. Every directory made here is named after its owner's PID
 * (owner.ts), so what a killed process left is recognised and removed by the next build and by
 * `cache prune` (removeAbandonedTemporaries).
 */

/**
 * The prefixes of the owned temporary directories: build workspaces, inflated archives,
 * `docker save`/load staging, filesystem exports, outputs assembled for a FIFO or device.
 */
export const TEMPORARY_PREFIXES = [
  'stratum-build-',
  'stratum-archive-',
  'stratum-daemon-',
  'stratum-load-',
  'stratum-export-',
  'stratum-output-',
  'stratum-inputs-',
] as const;

export type TemporaryPrefix = (typeof TEMPORARY_PREFIXES)[number];

/** `$STRATUM_TMPDIR`, else `tmp/` in the (default) cache directory. */
export function temporaryRoot(env: NodeJS.ProcessEnv = process.env): string {
  return cacheDirLayout(defaultCacheDir(env), env).tmp;
}

/** A new directory `<prefix><pid>-<random>` in `parent` (default temporaryRoot()), made if missing. */
export async function makeOwnedTempDir(
  prefix: TemporaryPrefix,
  parent: string = temporaryRoot(),
): Promise<string> {
  // Synchronous calls: made at every build's start (`build --watch` waits for it).
  makeDirectoriesSync(parent);
  return Promise.resolve(mkdtempSync(join(parent, ownedName(prefix, ''))));
}

/** The link in a staging record that names the staging directory (makeOwnedStagingDir). */
const STAGING_LINK = 'staging';

/**
 * A staging directory that cannot live in the temporary root: beside an output directory, so
 * that its entries are renamed into place on the output's own filesystem (`type=local`). It is
 * named `.stratum-export-<pid>-…`, and recorded *before* it is made by an owned directory
 * `stratum-export-<pid>-…` in `root` holding a symlink to it; removeAbandonedTemporaries removes
 * the staging directory with its record once the owner is gone, so a killed export leaves
 * nothing that the next build or `cache prune` does not remove. `remove` undoes both.
 */
export async function makeOwnedStagingDir(
  beside: string,
  root: string = temporaryRoot(),
): Promise<{ readonly dir: string; readonly remove: () => Promise<void> }> {
  const record = await makeOwnedTempDir('stratum-export-', root);
  const dir = join(beside, ownedName('.stratum-export-', randomBytes(6).toString('hex')));
  const remove = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    await rm(record, { recursive: true, force: true });
  };
  try {
    await symlink(dir, join(record, STAGING_LINK));
    await mkdir(dir, { mode: 0o700 });
  } catch (error) {
    await remove();
    throw error;
  }
  return { dir, remove };
}

/**
 * Removes the staging directory an abandoned record names, if the record has one; only a
 * `.stratum-export-<pid>-…` of the record's own dead owner, whatever the link says.
 */
async function removeRecordedStaging(record: string, owner: number): Promise<void> {
  const staging = await readlink(join(record, STAGING_LINK)).catch(() => undefined);
  if (staging === undefined || ownerOf(basename(staging), '.stratum-export-') !== owner) return;
  await rm(staging, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
}

/**
 * Removes the owned temporary directories in `parent` whose process no longer runs (and the
 * staging directories their records name); returns how many. Removal failures are ignored:
 * another process may be removing the same leftover.
 */
export async function removeAbandonedTemporaries(
  parent: string,
  options: { readonly beforeRemove?: (path: string) => Promise<void> } = {},
): Promise<number> {
  let names: string[];
  try {
    // Synchronous: one listing at every build's start, where a thread-pool round trip costs
    // more than the call (0.3-1 ms on a small VM).
    names = readdirSync(parent);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 0;
    throw error;
  }
  let removed = 0;
  for (const name of names) {
    const prefix = TEMPORARY_PREFIXES.find((candidate) => isAbandoned(name, candidate));
    if (prefix === undefined) continue;
    await options.beforeRemove?.(join(parent, name));
    if (prefix === 'stratum-export-') await removeRecordedStaging(join(parent, name), ownerOf(name, prefix)!);
    await rm(join(parent, name), { recursive: true, force: true, maxRetries: 3 }).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

/** How often a build looks for what killed builds left in a store (see sweepDue). */
export const SWEEP_INTERVAL_MS = 10 * 60_000;
const CLOCK_SLACK_MS = 1000;

/**
 * Whether the sweep named `stamp` (a file) is due, marking it done now when it is. Looking for a
 * killed build's partial blobs lists every blob of the store: ~8 ms for 2,000 blobs at the start
 * of every build, growing with the cache. What it finds is rare and harmless (a partial blob is
 * never read: it has no digest name), so builds look at most once per SWEEP_INTERVAL_MS, and
 * `cache prune` always does.
 */
export function sweepDue(stamp: string, now = Date.now()): boolean {
  const last = statSync(stamp, { throwIfNoEntry: false });
  // A stamp from the future (a clock set back) does not stop sweeps for good. "The future" has a
  // second's slack: a file's mtime has nanoseconds (kernels with fine-grained timestamps, 6.13+)
  // where Date.now() is truncated to the millisecond, so a stamp written just now can be ahead.
  if (last !== undefined && now - last.mtimeMs < SWEEP_INTERVAL_MS && last.mtimeMs <= now + CLOCK_SLACK_MS)
    return false;
  try {
    writeFileSync(stamp, '');
  } catch {
    // no stamp (a read-only or missing directory): the sweep runs every time, as it always did
  }
  return true;
}
