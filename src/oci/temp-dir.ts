import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { makeDirectories } from './directories.js';
import { isAbandoned, ownedName } from './owner.js';

/**
 * Where stratum's temporary state lives: `$STRATUM_TMPDIR`, else `tmp/` in the cache directory,
 * never loose in the system /tmp. Every directory made here is named after its owner's PID
 * (owner.ts), so what a killed process left is recognised and removed by the next build and by
 * `cache prune` (removeAbandonedTemporaries).
 */

/** The prefixes of the owned temporary directories: build workspaces, inflated archives, `docker save`/load staging. */
export const TEMPORARY_PREFIXES = [
  'stratum-build-',
  'stratum-archive-',
  'stratum-daemon-',
  'stratum-load-',
] as const;

export type TemporaryPrefix = (typeof TEMPORARY_PREFIXES)[number];

/** `$STRATUM_CACHE_DIR`, else `$XDG_CACHE_HOME/stratum`, else `~/.cache/stratum`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['STRATUM_CACHE_DIR']) return env['STRATUM_CACHE_DIR'];
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'stratum');
  return join(homedir(), '.cache', 'stratum');
}

/** `$STRATUM_TMPDIR`, else `tmp/` in the (default) cache directory. */
export function temporaryRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env['STRATUM_TMPDIR'] ?? join(defaultCacheDir(env), 'tmp');
}

/** A new directory `<prefix><pid>-<random>` in `parent` (default temporaryRoot()), made if missing. */
export async function makeOwnedTempDir(
  prefix: TemporaryPrefix,
  parent: string = temporaryRoot(),
): Promise<string> {
  await makeDirectories(parent);
  return mkdtemp(join(parent, ownedName(prefix, '')));
}

/**
 * Removes the owned temporary directories in `parent` whose process no longer runs; returns how
 * many. Removal failures are ignored: another process may be removing the same leftover.
 */
export async function removeAbandonedTemporaries(
  parent: string,
  options: { readonly beforeRemove?: (path: string) => Promise<void> } = {},
): Promise<number> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 0;
    throw error;
  }
  let removed = 0;
  for (const name of names) {
    if (!TEMPORARY_PREFIXES.some((prefix) => isAbandoned(name, prefix))) continue;
    await options.beforeRemove?.(join(parent, name));
    await rm(join(parent, name), { recursive: true, force: true, maxRetries: 3 }).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}
