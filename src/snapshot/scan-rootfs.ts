import { constants } from 'node:fs';
import { chmod, copyFile, lchown, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from '../oci/blob-store.js';
import type { LayerRef } from '../oci/image.js';
import { StratumError } from '../errors.js';
import type { Workspace } from '../util/workspace.js';
import { extractLayerAuto } from './extract.js';
import type { HeldLayer, UnpackedRootfsCache } from './kept-rootfs.js';
import type { RootfsOptions, RootfsSnapshot, Snapshotter } from './snapshotter.js';
import { createTreeBaseline } from './tree-baseline.js';
import type { LayerDiff, TreeBaseline, TreeSnapshot } from './types.js';

/**
 * The scan snapshotter: a stage's root filesystem is one plain directory, made only when a step
 * first needs it (a fully cached stage never extracts anything). It knows which of the stage's
 * layers it holds, so that cache hits after a miss are applied by extracting just their layers,
 * and it keeps the scan baseline in step with what is on disk.
 */
export class ScanSnapshotter implements Snapshotter {
  readonly name = 'scan';

  constructor(
    private readonly workspace: Workspace,
    private readonly blobs: BlobStore,
    /** Stage directories kept between builds; none when undefined. */
    private readonly kept?: UnpackedRootfsCache,
  ) {}

  rootfs(purpose: string, options: RootfsOptions = {}): RootfsSnapshot {
    return new ScanRootfs(
      this.workspace,
      this.blobs,
      purpose,
      options.onMaterialize,
      options.keep === false ? undefined : this.kept,
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The scan snapshotter's rootfs: one directory per stage, layers extracted into it. */
class ScanRootfs implements RootfsSnapshot {
  private dir: string | undefined;
  /** The layers the directory holds, in order, each with how to undo it when that is known. */
  private readonly held: HeldLayer[] = [];
  private tracker: (TreeBaseline & { readonly baseline: () => TreeSnapshot | undefined }) | undefined;
  private baselineValid = false;

  constructor(
    private readonly workspace: Workspace,
    private readonly blobs: BlobStore,
    private readonly purpose: string,
    private readonly onMaterialize?: (layers: number) => void,
    private readonly unpacked?: UnpackedRootfsCache,
  ) {}

  private get applied(): number {
    return this.held.length;
  }

  view(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    return this.sync(layers, signal);
  }

  async prepare(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    const dir = await this.sync(layers, signal);
    await this.markBaseline(signal);
    return dir;
  }

  /** Materialises the directory so it holds exactly `layers`; returns its path. */
  private async sync(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    if (this.dir === undefined) {
      const claimed = this.workspace.newPath(this.purpose);
      const kept = (await this.unpacked?.claim(layers, claimed)) ?? [];
      if (kept.length > 0) {
        this.dir = claimed;
        this.held.push(...kept);
      } else {
        this.dir = await this.workspace.dir(this.purpose);
        // mkdtemp makes 0700 directories; an image's root is 0755 (or what its layers say).
        await chmod(this.dir, 0o755);
      }
    }
    if (layers.length < this.applied) {
      throw new StratumError('IO', `rootfs ${this.dir}: cannot remove layers once applied`);
    }
    if (layers.length > this.applied) this.onMaterialize?.(layers.length - this.applied);
    for (const layer of layers.slice(this.applied)) {
      const stream = this.blobs.read(layer.descriptor.digest, { verify: true, size: layer.descriptor.size });
      await extractLayerAuto(stream, this.dir, {
        layerName: layer.descriptor.digest,
        ...(signal ? { signal } : {}),
      });
      this.held.push({ layer });
      this.baselineValid = false;
    }
    return this.dir;
  }

  /** Records the state before a step (reusing the last step's after-scan when still valid). */
  private async markBaseline(signal?: AbortSignal): Promise<void> {
    if (this.dir === undefined) throw new StratumError('IO', 'rootfs: prepare() before sync()');
    this.tracker ??= createTreeBaseline(this.dir);
    if (!this.baselineValid) {
      await this.tracker.prepare(signal);
      this.baselineValid = true;
    }
    const baseline = this.tracker.baseline();
    if (baseline !== undefined && (await breakHardLinks(this.dir, baseline))) {
      await this.tracker.prepare(signal);
    }
  }

  /** What the step changed; the new state becomes the baseline. */
  async commit(signal?: AbortSignal): Promise<LayerDiff> {
    if (this.tracker === undefined) throw new StratumError('IO', 'rootfs: commit() before prepare()');
    const diff = await this.tracker.commit(signal);
    return diff;
  }

  /** After the build: hand the directory to the kept-rootfs cache for the next build. */
  async remove(): Promise<void> {
    if (this.dir === undefined || this.unpacked === undefined) return;
    const dir = this.dir;
    this.dir = undefined;
    await this.unpacked.keep(dir, this.held);
  }

  /** After a step's layer was added to the state, the directory holds that layer too. */
  committed(layer: LayerRef, undo?: readonly string[]): Promise<void> {
    this.held.push(undo === undefined ? { layer } : { layer, undo });
    return Promise.resolve();
  }
}

/**
 * Docker's builder runs each step on overlayfs, where every earlier step is a read-only lower
 * layer: writing to a file that has other hard links copies just that name up, and the other
 * names keep the old content. A plain directory would change them all. So before a step, every
 * hard-link group is split into independent files (the first name keeps the inode), which is
 * what the step would see of lower-layer files on overlayfs. Links a step creates stay links
 * within that step's layer. Returns whether anything was split.
 */
export async function breakHardLinks(root: string, snapshot: TreeSnapshot): Promise<boolean> {
  const seen = new Set<string>();
  let changed = false;
  for (const [path, entry] of snapshot.entries) {
    if (entry.type !== 'file' || entry.nlink < 2) continue;
    const id = `${entry.dev}:${entry.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      continue;
    }
    const target = join(root, path);
    const copy = `${target}.stratum-unlink`;
    await copyFile(target, copy, constants.COPYFILE_FICLONE);
    await lchown(copy, entry.uid, entry.gid);
    await chmod(copy, entry.mode);
    const mtime = Number(entry.mtimeNs / 1000n) / 1e6;
    await utimes(copy, mtime, mtime);
    await rename(copy, target).catch(async (error: unknown) => {
      await rm(copy, { force: true });
      throw error;
    });
    changed = true;
  }
  return changed;
}
