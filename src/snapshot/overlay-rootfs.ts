import type { BlobStore } from '../oci/blob-store.js';
import type { LayerRef } from '../oci/image.js';
import { StratumError } from '../errors.js';
import type { OverlayMounts, ActiveSnapshot } from './overlay.js';
import type { OfflineUpper, RootfsOptions, RootfsSnapshot, Snapshotter } from './snapshotter.js';
import type { LayerDiff } from './types.js';

/** How many layers a cold start extracts side by side (each is one tar stream on one core). */
const PARALLEL_EXTRACTIONS = 2;

/**
 * The overlay snapshotter: a stage's rootfs is an overlay mount of its layers (each unpacked once
 * per machine, keyed by DiffID) with a fresh upperdir per step. A step's upperdir becomes the
 * unpacked layer of the DiffID written from it, so nothing is ever extracted twice.
 */
export class OverlaySnapshotter implements Snapshotter {
  readonly name = 'overlay';

  constructor(
    private readonly mounts: OverlayMounts,
    private readonly blobs: BlobStore,
    /**
     * Whether an upperdir is exactly its layer extracted (not with SOURCE_DATE_EPOCH clamping
     * times): only then is it kept as the unpacked layer.
     */
    private readonly adoptUppers: boolean,
    /**
     * The mounts outlive this build (a `build --watch` process keeps them for its next build):
     * close() unmounts what this build mounted and keeps the session.
     */
    private readonly keptMounts = false,
  ) {}

  /** This build's stage rootfs: a failed build never got to remove() theirs. */
  private readonly made: OverlayRootfs[] = [];

  rootfs(_purpose: string, options: RootfsOptions = {}): RootfsSnapshot {
    const rootfs = new OverlayRootfs(this.mounts, this.blobs, options.onMaterialize, this.adoptUppers);
    this.made.push(rootfs);
    return rootfs;
  }

  /** Unmounts every overlay this build mounted and ends its leases on unpacked layers. */
  async close(): Promise<void> {
    if (!this.keptMounts) return this.mounts.layers.close();
    for (const rootfs of this.made) await rootfs.remove();
    // Whatever an interrupted step had mounted and not yet handed to its rootfs.
    await this.mounts.layers.sweep();
  }
}

/** One stage's overlay mount, remounted when its chain changes or a step has written it. */
class OverlayRootfs implements RootfsSnapshot {
  private active: ActiveSnapshot | undefined;
  private activeChain: readonly LayerRef[] = [];
  /** The active snapshot was written by a step: the next step needs a fresh one. */
  private used = false;

  constructor(
    private readonly snapshotter: OverlayMounts,
    private readonly blobs: BlobStore,
    private readonly onMaterialize?: (layers: number) => void,
    /**
     * Whether an upperdir is exactly its layer extracted (not with SOURCE_DATE_EPOCH clamping
     * times): only then is it kept as the unpacked layer. Rootless too: extraction gives owners
     * through the namespace, so both hold the same ids on disk.
     */
    private readonly adoptUppers = true,
  ) {}

  /** sync() calls one at a time: two stages reading this one's rootfs must not remount it twice. */
  private syncing: Promise<unknown> = Promise.resolve();

  view(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    return this.sync(layers, signal);
  }

  /**
   * A step writes into a mount no step has written yet: sync() remounts with a fresh upperdir
   * once the last one was committed, as the upperdir becomes that step's layer.
   */
  prepare(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    return this.sync(layers, signal);
  }

  private sync(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    const next = this.syncing.then(() => this.syncNow(layers, signal));
    this.syncing = next.catch(() => undefined);
    return next;
  }

  private async syncNow(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string> {
    if (this.active !== undefined && !this.used && sameChain(this.activeChain, layers))
      return this.active.merged;
    const replacing = this.active;
    this.active = undefined;
    const unpacked = this.snapshotter.layers;
    const missing = layers.filter((layer) => !this.known.has(layer.diffId));
    const lowers = new Map<string, string>();
    let extracted = 0;
    const queue = [...missing];
    const worker = async (): Promise<void> => {
      for (let layer = queue.shift(); layer !== undefined; layer = queue.shift()) {
        const current = layer;
        const path = await unpacked.ensure(
          current.diffId,
          () => {
            extracted++;
            if (extracted === 1) this.onMaterialize?.(missing.length);
            return this.blobs.read(current.descriptor.digest, {
              verify: true,
              size: current.descriptor.size,
            });
          },
          signal,
          current.descriptor.digest,
        );
        lowers.set(current.diffId, path);
        this.known.add(current.diffId);
      }
    };
    await Promise.all([...Array(Math.min(PARALLEL_EXTRACTIONS, queue.length)).keys()].map(worker));
    this.active = await this.snapshotter.prepare(
      layers.map((layer) => lowers.get(layer.diffId) ?? unpacked.pathOf(layer.diffId)),
      replacing,
    );
    this.activeChain = [...layers];
    this.used = false;
    return this.active.merged;
  }

  /** DiffIDs this rootfs has ensured (leased) in the unpacked-layer store. */
  private readonly known = new Set<string>();

  offline(): Promise<OfflineUpper | undefined> {
    const active = this.active;
    if (active === undefined || this.used) return Promise.resolve(undefined);
    return Promise.resolve({ upper: active.upper, detach: () => this.snapshotter.detach(active) });
  }

  async commit(signal?: AbortSignal): Promise<LayerDiff> {
    if (this.active === undefined) throw new StratumError('IO', 'rootfs: commit() before prepare()');
    this.used = true;
    return this.snapshotter.commit(this.active, signal);
  }

  async committed(layer: LayerRef): Promise<void> {
    const active = this.active;
    if (active === undefined || !this.adoptUppers) return;
    if (await this.snapshotter.layers.adopt(layer.diffId, active.upper)) {
      this.known.add(layer.diffId);
      this.snapshotter.adoptedUpper(this.snapshotter.layers.pathOf(layer.diffId));
    }
  }

  /** Unmounts and removes the active snapshot (after a mount still under way, if any). */
  async remove(): Promise<void> {
    await this.syncing;
    const active = this.active;
    this.active = undefined;
    if (active !== undefined) await this.snapshotter.remove(active);
  }
}

function sameChain(a: readonly LayerRef[], b: readonly LayerRef[]): boolean {
  return a.length === b.length && a.every((layer, index) => layer.diffId === b[index]!.diffId);
}
