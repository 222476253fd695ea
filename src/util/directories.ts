import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { resolvedNow } from './now.js';

/**
 * `mkdir -p` with a bound. Node's `mkdir(path, { recursive: true })` never returns for some
 * paths (under /proc it retries ENOENT forever in the thread pool, where no signal reaches it),
 * so every directory stratum creates on a path a user chose goes through here: one `mkdir`
 * per missing component, each tried once, no loop that can spin. Returns the top-most directory
 * this call created (to undo it), or undefined if none. The calls are synchronous
 * (makeDirectoriesSync): a stat(2) per component costs less than a thread-pool round trip; an
 * error is a rejection.
 */
export function makeDirectories(path: string, mode?: number): Promise<string | undefined> {
  return resolvedNow(() => makeDirectoriesSync(path, mode));
}

/** `mkdir -p` with a bound (see above), for callers that cannot await. */
export function makeDirectoriesSync(path: string, mode?: number): string | undefined {
  const target = resolve(path);
  const missing: string[] = [];
  for (let current = target; ; current = dirname(current)) {
    const kind = pathKindSync(current);
    if (kind === 'directory') break;
    if (kind === 'other') {
      throw new StratumError('IO', `${target}: ${current} exists and is not a directory`);
    }
    missing.push(current);
    if (dirname(current) === current) break;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, mode === undefined ? undefined : { mode });
    } catch (error) {
      if (errnoCode(error) === 'EEXIST' && pathKindSync(dir) === 'directory') continue;
      // One line naming the path asked for and the part that could not be made (/proc/x: ENOENT).
      throw new StratumError('IO', `${target}: cannot create ${dir} (${errnoCode(error) ?? String(error)})`);
    }
  }
  return missing[0];
}

function pathKindSync(path: string): 'directory' | 'other' | 'missing' {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 'missing';
    if (errnoCode(error) === 'ENOTDIR') return 'other';
    throw error;
  }
}
