import { constants } from 'node:fs';
import { chmod, copyFile, lchown, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from '../oci/blob-store.js';
import type { LayerRef, ImageSource } from '../oci/image.js';
import { createScanSnapshotter, extractLayerAuto } from '../snapshot/index.js';
import type { LayerDiff, Snapshotter, TreeSnapshot } from '../snapshot/index.js';
import { StratumError } from '../errors.js';
import type { Workspace } from './workspace.js';
import type { HeldLayer, UnpackedRootfsCache } from './unpacked.js';
import type { OfflineUpper } from './context/apply.js';

/**
 * A stage's root filesystem, made only when a step first needs it (a fully cached stage never
 * extracts anything). It knows how many of the stage's layers it holds, so that cache hits
 * after a miss are applied by extracting just their layers, and it keeps the snapshot baseline
 * in step with what is on disk.
 */
/**
 * What a stage runner needs of its root filesystem, whichever snapshotter backs it: `sync`
 * gives the directory holding exactly `layers`, `prepare`/`commit` bracket a step and give its
 * diff, `recordLayerApplied` says the step's layer joined the state, `keep` runs after a
 * successful build.
 */
export interface StageRootfs {
  sync(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string>;
  prepare(signal?: AbortSignal): Promise<void>;
  /** After prepare: the upperdir a step may write once it lets go of the mount (overlay only). */
  offline?(): Promise<OfflineUpper | undefined>;
  commit(signal?: AbortSignal): Promise<LayerDiff>;
  recordLayerApplied(layer: LayerRef, undo: readonly string[] | undefined): Promise<void>;
  keep(): Promise<void>;
}

/** The scan snapshotter's rootfs: one directory per stage, layers extracted into it. */
export class Rootfs implements StageRootfs {
  private dir: string | undefined;
  /** The layers the directory holds, in order, each with how to undo it when that is known. */
  private readonly held: HeldLayer[] = [];
  private snapshotter: (Snapshotter & { readonly baseline: () => TreeSnapshot | undefined }) | undefined;
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

  /** Materialises the directory so it holds exactly `layers`; returns its path. */
  async sync(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
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

  get path(): string | undefined {
    return this.dir;
  }

  /** Records the state before a step (reusing the last step's after-scan when still valid). */
  async prepare(signal?: AbortSignal): Promise<void> {
    if (this.dir === undefined) throw new StratumError('IO', 'rootfs: prepare() before sync()');
    this.snapshotter ??= createScanSnapshotter(this.dir);
    if (!this.baselineValid) {
      await this.snapshotter.prepare(signal);
      this.baselineValid = true;
    }
    const baseline = this.snapshotter.baseline();
    if (baseline !== undefined && (await breakHardLinks(this.dir, baseline))) {
      await this.snapshotter.prepare(signal);
    }
  }

  /** What the step changed; the new state becomes the baseline. */
  async commit(signal?: AbortSignal): Promise<LayerDiff> {
    if (this.snapshotter === undefined) throw new StratumError('IO', 'rootfs: commit() before prepare()');
    const diff = await this.snapshotter.commit(signal);
    return diff;
  }

  /** After a successful build: hand the directory to the unpacked cache for the next build. */
  async keep(): Promise<void> {
    if (this.dir === undefined || this.unpacked === undefined) return;
    const dir = this.dir;
    this.dir = undefined;
    await this.unpacked.keep(dir, this.held);
  }

  /** After a step's layer was added to the state, the directory holds that layer too. */
  recordLayerApplied(layer: LayerRef, undo: readonly string[] | undefined): Promise<void> {
    this.held.push(undo === undefined ? { layer } : { layer, undo });
    return Promise.resolve();
  }
}

/** Copies an image's layers into the build's blob store (skipping those already there). */
export async function importLayers(
  source: ImageSource,
  blobs: BlobStore,
  signal?: AbortSignal,
): Promise<LayerRef[]> {
  const manifest = source.manifest.value;
  const diffIds = source.config.value.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${source.name}: the config lists ${diffIds.length} diff_ids but the manifest has ${manifest.layers.length} layers`,
    );
  }
  const layers: LayerRef[] = [];
  for (const [index, descriptor] of manifest.layers.entries()) {
    if (!(await blobs.has(descriptor.digest))) {
      const stream = await source.openBlob(descriptor, signal);
      await blobs.putStream(stream, descriptor.digest);
    }
    layers.push({ descriptor, diffId: diffIds[index]! });
  }
  return layers;
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
