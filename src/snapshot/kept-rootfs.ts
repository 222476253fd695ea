import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { digestHex } from '../oci/digest.js';
import type { LayerRef } from '../oci/image.js';
import { chainId } from '../oci/digest.js';
import { readBootId } from './flush-journal.js';

/** A sidecar's `held` as parsed: an earlier version's sidecar had none. */
function isHeldList(value: unknown): value is readonly HeldLayer[] {
  return Array.isArray(value);
}

/** What `<name>.json` says of a kept filesystem: the boot it was kept in, the layers it holds. */
interface Sidecar {
  readonly bootId: string;
  readonly held: readonly HeldLayer[];
}

/** A layer a kept filesystem holds, and how to take it back off when the step only added paths. */
export interface HeldLayer {
  readonly layer: LayerRef;
  /** Paths the layer added (tops of added subtrees, deepest first); absent when not undoable. */
  readonly undo?: readonly string[];
}

/**
 * Unpacked root filesystems kept between builds, named by the ChainID of the layers they hold,
 * each with a sidecar `<name>.json` listing those layers. Docker and buildah keep every layer
 * unpacked (overlay); stratum keeps the last few stage filesystems instead, so that a rebuild
 * whose first miss comes after cached steps moves a kept directory into place rather than
 * extracting every layer again. A kept filesystem holding *more* layers than needed can still
 * serve when those extra layers only added paths (the usual last `COPY src/`): they are undone
 * by removing what they added. Claiming is a rename, so two builds never share a directory;
 * the one that loses the race extracts as before.
 *
 * A kept filesystem is kept without waiting for its bytes to reach the disk, so its sidecar
 * names the boot it was kept in: after a machine crash (another boot id) it may be torn, and is
 * removed instead of claimed. Where the kernel gives no boot id nothing is kept.
 */
export class UnpackedRootfsCache {
  constructor(
    readonly dir: string,
    /** How many unpacked filesystems to keep (each is a whole rootfs on disk). */
    readonly limit = 3,
  ) {}

  private nameFor(layers: readonly HeldLayer[]): string {
    return digestHex(chainId(layers.map((held) => held.layer.diffId)));
  }

  /**
   * Moves the best kept filesystem for `layers` to `target` (which must not exist), undoing
   * extra layers it holds, and returns the layers it now holds (a prefix of `layers`); empty
   * when none can serve.
   */
  async claim(layers: readonly LayerRef[], target: string): Promise<HeldLayer[]> {
    for (const candidate of await this.candidates(layers)) {
      try {
        await rename(join(this.dir, candidate.name), target);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') {
          // Another build took it (or a killed one left only the sidecar).
          await rm(join(this.dir, `${candidate.name}.json`), { force: true });
          continue;
        }
        throw error;
      }
      await rm(join(this.dir, `${candidate.name}.json`), { force: true });
      for (const extra of candidate.held.slice(candidate.prefix).reverse()) {
        for (const path of extra.undo ?? []) await rm(join(target, path), { recursive: true, force: true });
      }
      return candidate.held.slice(0, candidate.prefix);
    }
    return [];
  }

  /** Kept filesystems that can serve `layers`, best (longest usable prefix) first. */
  private async candidates(
    layers: readonly LayerRef[],
  ): Promise<{ name: string; held: readonly HeldLayer[]; prefix: number }[]> {
    const found: { name: string; held: readonly HeldLayer[]; prefix: number }[] = [];
    const bootId = await readBootId();
    for (const entry of await readdir(this.dir).catch(() => [])) {
      if (!entry.endsWith('.json')) continue;
      let sidecar: Sidecar;
      try {
        sidecar = JSON.parse(await readFile(join(this.dir, entry), 'utf8')) as Sidecar;
      } catch {
        continue;
      }
      if (bootId === undefined || sidecar.bootId !== bootId || !isHeldList(sidecar.held)) {
        // Kept before a crash (or by an earlier version, which recorded no boot): not trusted.
        const name = entry.slice(0, -'.json'.length);
        await rm(join(this.dir, name), { recursive: true, force: true });
        await rm(join(this.dir, entry), { force: true });
        continue;
      }
      const held = sidecar.held;
      let prefix = 0;
      while (
        prefix < held.length &&
        prefix < layers.length &&
        held[prefix]!.layer.diffId === layers[prefix]!.diffId
      )
        prefix++;
      // Layers past the shared prefix must all be undoable; and the shared prefix is what we need.
      if (prefix === 0 || prefix !== layers.length) continue;
      if (!held.slice(prefix).every((extra) => extra.undo !== undefined)) continue;
      found.push({ name: entry.slice(0, -'.json'.length), held, prefix });
    }
    return found.sort((a, b) => a.held.length - b.held.length);
  }

  /** Keeps `dir` (holding exactly `held`) for later builds, and drops the oldest beyond the limit. */
  async keep(dir: string, held: readonly HeldLayer[]): Promise<void> {
    if (held.length === 0) return;
    const bootId = await readBootId();
    if (bootId === undefined) return;
    await mkdir(this.dir, { recursive: true });
    const name = this.nameFor(held);
    const target = join(this.dir, name);
    try {
      await rename(dir, target);
    } catch (error) {
      // Another build kept the same layers first (ENOTEMPTY/EEXIST): ours goes with the workspace.
      if (['ENOTEMPTY', 'EEXIST', 'EXDEV'].includes(errnoCode(error) ?? '')) return;
      throw error;
    }
    const sidecar: Sidecar = { bootId, held };
    await writeFile(join(this.dir, `${name}.json`), JSON.stringify(sidecar));
    const now = new Date();
    // `cache prune` may have taken it already: keeping is only an optimisation.
    await utimes(target, now, now).catch(() => undefined);
    await this.trim();
  }

  private async trim(): Promise<void> {
    const kept: { name: string; mtime: number }[] = [];
    for (const name of await readdir(this.dir).catch(() => [])) {
      if (name.endsWith('.json')) continue;
      const info = await stat(join(this.dir, name)).catch(() => undefined);
      if (info !== undefined) kept.push({ name, mtime: info.mtimeMs });
    }
    kept.sort((a, b) => b.mtime - a.mtime);
    for (const old of kept.slice(this.limit)) {
      await rm(join(this.dir, `${old.name}.json`), { force: true });
      await rm(join(this.dir, old.name), { recursive: true, force: true });
    }
  }
}
