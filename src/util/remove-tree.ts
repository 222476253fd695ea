import { chmod, lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { fsPath, listDir } from './file-names.js';

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
  await chmod(fsPath(dir), 0o700).catch(() => undefined);
  const names = await listDir(dir).catch(() => []);
  for (const name of names) {
    const path = join(dir, name);
    const stats = await lstat(fsPath(path)).catch(() => undefined);
    if (stats?.isDirectory() === true) await openUp(path);
  }
}
