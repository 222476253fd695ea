import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { syncDirectory, temporarySibling, writeFileAtomic } from '../oci/atomic-file.js';
import { makeDirectories } from '../oci/directories.js';

/**
 * All-or-nothing file output: everything is written to a temporary name in the destination's
 * own directory (same filesystem, so the final rename is atomic) and renamed into place only
 * after it is complete and flushed. On any failure the temporary file is removed, so the
 * destination either keeps its old content or gets the whole new one, never a part.
 */

export function temporaryPathFor(destination: string): string {
  return temporarySibling(destination);
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs `write(tmp)` and renames tmp over `destination`; the destination's directory must exist. */
export async function writeAtomically(
  destination: string,
  write: (temporary: string) => Promise<void>,
): Promise<void> {
  await requireParentDirectory(destination);
  const temporary = temporaryPathFor(destination);
  try {
    await write(temporary);
    await fsync(temporary);
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true, recursive: true });
    throw error;
  }
  await syncDirectory(dirname(destination));
}

export async function writeFileAtomically(destination: string, data: Buffer | string): Promise<void> {
  await requireParentDirectory(destination);
  await writeFileAtomic(destination, data);
}

export async function requireParentDirectory(destination: string): Promise<void> {
  const parent = dirname(destination);
  try {
    if (!(await stat(parent)).isDirectory())
      throw new StratumError('NOT_FOUND', `${destination}: ${parent} is not a directory`);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT')
      throw new StratumError('NOT_FOUND', `${destination}: directory ${parent} does not exist`);
    throw error;
  }
}

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
  await makeDirectories(dirname(lockPath));
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
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
    await rm(lockPath, { force: true });
  }
}
