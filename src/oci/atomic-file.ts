import { randomBytes } from 'node:crypto';
import { chmod, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { makeDirectories } from './directories.js';
import { ownedName } from './owner.js';

/**
 * The one way stratum replaces a small file: write a temporary file beside it (same directory,
 * so the rename is atomic), flush it to disk, rename it over the destination, and flush the
 * directory so the rename survives a crash. A reader sees the old content or the new, never a
 * part; on failure the temporary file is removed. Temporary names carry the writer's PID
 * (owner.ts) so that a crash's leftovers can be told from a live writer's.
 */
export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644, less the umask). */
  readonly mode?: number;
  /** Create missing parent directories (with this mode when given). */
  readonly createParents?: boolean;
}

export function temporarySibling(destination: string): string {
  return join(
    dirname(destination),
    ownedName(`.${basename(destination)}.tmp-`, randomBytes(6).toString('hex')),
  );
}

export async function writeFileAtomic(
  destination: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  if (options.createParents === true) await makeDirectories(dirname(destination));
  const temporary = temporarySibling(destination);
  try {
    const handle = await open(temporary, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The umask may have narrowed the mode; a credential file must be exactly what was asked.
    if (options.mode !== undefined) await chmod(temporary, options.mode);
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(dirname(destination));
}

/** Flushes a directory's entries (a rename in it); some filesystems refuse, which is fine. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}
