import { rmSync, writeFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { makeDirectoriesSync } from '../../util/directories.js';

/**
 * A lock file beside an index.json, so that two stratum processes adding tags to one layout
 * do not lose each other's update (the rename is atomic, but read-modify-write is not).
 * A lock older than `staleMs` is taken to be left by a crashed process and broken.
 */
export async function withLock<T>(
  lockPath: string,
  use: () => Promise<T>,
  options: { readonly timeoutMs?: number; readonly staleMs?: number; readonly signal?: AbortSignal } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const staleMs = options.staleMs ?? 10 * 60_000;
  const started = Date.now();
  // Synchronous calls but for the wait: taking and dropping the lock is on the path of every
  // image written to a layout, where each asynchronous call was a thread-pool round trip.
  makeDirectoriesSync(dirname(lockPath));
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      writeFileSync(lockPath, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
      const age = await stat(lockPath).then(
        (info) => Date.now() - info.mtimeMs,
        () => 0,
      );
      if (age > staleMs) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() - started > timeoutMs) {
        throw new StratumError(
          'IO',
          `${lockPath}: still locked by another stratum process after ${timeoutMs / 1000}s`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25 + Math.random() * 50));
    }
  }
  try {
    return await use();
  } finally {
    rmSync(lockPath, { force: true });
  }
}
