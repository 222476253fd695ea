import { chmod, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';

/**
 * `rm -rf` that also works without root on a tree whose directories deny their owner write or
 * search permission: an image's 0555 directories once extracted rootless, and overlayfs's
 * `workdir/work` (mode 000). Root never needs the second pass; an owner can always chmod.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (error) {
    const code = errnoCode(error);
    if (code !== 'EACCES' && code !== 'EPERM') throw error;
  }
  await openUp(path);
  await rm(path, { recursive: true, force: true });
}

/** Gives the owner rwx on every directory below `dir` (top-down, so each can be listed). */
async function openUp(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory()) await openUp(join(dir, entry.name));
  }
}
