import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';

/**
 * `mkdir -p` with a bound. Node's `mkdir(path, { recursive: true })` never returns for some
 * paths (under /proc it retries ENOENT forever in the thread pool, where no signal reaches it),
 * so every directory stratum creates on a path a user chose goes through here: one `mkdir`
 * per missing component, each tried once, no loop that can spin.
 */
/** Returns the top-most directory this call created (to undo it), or undefined if none. */
export async function makeDirectories(path: string): Promise<string | undefined> {
  const target = resolve(path);
  const missing: string[] = [];
  for (let current = target; ; current = dirname(current)) {
    const kind = await pathKind(current);
    if (kind === 'directory') break;
    if (kind === 'other') {
      throw new StratumError('IO', `${target}: ${current} exists and is not a directory`);
    }
    missing.push(current);
    if (dirname(current) === current) break; // the root itself is missing: mkdir reports why
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (error) {
      // Another process made it between our stat and mkdir: that is what we wanted.
      if (errnoCode(error) === 'EEXIST' && (await pathKind(dir)) === 'directory') continue;
      throw error;
    }
  }
  return missing[0];
}

async function pathKind(path: string): Promise<'directory' | 'other' | 'missing'> {
  try {
    return (await stat(path)).isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 'missing';
    if (errnoCode(error) === 'ENOTDIR') return 'other';
    throw error;
  }
}

/**
 * The same with synchronous calls, for directories that almost always exist already (a lease
 * directory, a cache's entries): one stat(2), where the asynchronous version's thread-pool round
 * trip cost more than the call.
 */
export function makeDirectoriesSync(path: string): string | undefined {
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
      mkdirSync(dir);
    } catch (error) {
      if (errnoCode(error) === 'EEXIST' && pathKindSync(dir) === 'directory') continue;
      throw error;
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
