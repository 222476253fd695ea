import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { digestHex } from '../oci/digest.js';
import type { LayerRef } from '../oci/image.js';
import { chainId } from './cache/key.js';

/**
 * Unpacked root filesystems kept between builds, named by the ChainID of the layers they hold.
 * Docker and buildah keep every layer unpacked (overlay); stratum keeps the last few stage
 * filesystems instead, so that a rebuild whose first miss comes after cached steps (the usual
 * "one source file changed" rebuild) moves a kept directory into place rather than extracting
 * every layer again. Claiming is a rename, so two builds never share one directory: the one
 * that loses the race extracts as before.
 */
export class UnpackedRootfsCache {
  constructor(
    readonly dir: string,
    /** How many unpacked filesystems to keep (each is a whole rootfs on disk). */
    readonly limit = 3,
  ) {}

  private pathFor(layers: readonly LayerRef[]): string {
    return join(this.dir, digestHex(chainId(layers.map((layer) => layer.diffId))));
  }

  /**
   * Moves the kept filesystem holding the longest prefix of `layers` to `target` (which must not
   * exist) and returns how many layers it holds; 0 when none is kept.
   */
  async claim(layers: readonly LayerRef[], target: string): Promise<number> {
    for (let count = layers.length; count > 0; count--) {
      try {
        await rename(this.pathFor(layers.slice(0, count)), target);
        return count;
      } catch (error) {
        const code = errnoCode(error);
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      }
    }
    return 0;
  }

  /** Keeps `dir` (holding exactly `layers`) for later builds, and drops the oldest beyond the limit. */
  async keep(dir: string, layers: readonly LayerRef[]): Promise<void> {
    if (layers.length === 0) return;
    await mkdir(this.dir, { recursive: true });
    const target = this.pathFor(layers);
    try {
      await rename(dir, target);
    } catch (error) {
      // Another build kept the same layers first (ENOTEMPTY/EEXIST): ours goes with the workspace.
      if (['ENOTEMPTY', 'EEXIST', 'EXDEV'].includes(errnoCode(error) ?? '')) return;
      throw error;
    }
    const now = new Date();
    await utimes(target, now, now);
    await this.trim();
  }

  private async trim(): Promise<void> {
    const kept: { path: string; mtime: number }[] = [];
    for (const name of await readdir(this.dir).catch(() => [])) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info !== undefined) kept.push({ path, mtime: info.mtimeMs });
    }
    kept.sort((a, b) => b.mtime - a.mtime);
    for (const old of kept.slice(this.limit)) await rm(old.path, { recursive: true, force: true });
  }
}
