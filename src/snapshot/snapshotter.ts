import type { LayerRef } from '../oci/image.js';
import type { LayerDiff } from './types.js';

/**
 * The snapshotter seam: how a build gets root filesystems to run steps in and what each step
 * changed. Two implementations, chosen per build by choose.ts:
 *
 * - **overlay** (overlay-rootfs.ts): each layer unpacked once per machine, keyed by DiffID, and
 *   mounted as overlayfs lowers with a fresh upperdir per step; a step's diff is read from its
 *   upperdir, and the upperdir becomes the unpacked copy of the layer written from it.
 * - **scan** (scan-rootfs.ts): one plain directory per stage, layers extracted into it; a step's
 *   diff is found by scanning the tree before and after. Works anywhere, without privileges.
 *
 * The verbs are containerd's (core/snapshots: Prepare, View, Commit, Remove), applied to one
 * stage's chain of layers rather than to one snapshot key: the steps of a stage form a single
 * chain, and a handle that lives as long as the stage lets the scan snapshotter extract only the
 * layers it lacks and reuse its last scan as the next baseline, and lets overlay remount only
 * when the chain changed. test/snapshot/conformance.test.ts runs every implementation through
 * the same cases.
 */
export type SnapshotterName = 'overlay' | 'scan';

export interface RootfsSnapshot {
  /**
   * View: the directory holding exactly `layers`, to read (a later stage's COPY --from, a RUN
   * mount). It stays valid until the next prepare() or remove().
   */
  view(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string>;
  /**
   * Prepare: the directory holding exactly `layers`, for one step to write in; what changes
   * from here on is that step's diff. The directory is the step's until commit() (overlay
   * unmounts it there). The scan snapshotter splits hard-link groups here, as overlay's copy-up
   * splits the one name a step writes.
   */
  prepare(layers: readonly LayerRef[], signal?: AbortSignal): Promise<string>;
  /** Commit: what the step changed since prepare(), to write its layer from. */
  commit(signal?: AbortSignal): Promise<LayerDiff>;
  /**
   * The layer written from the last commit() is now part of the chain (with, when the step only
   * added paths, those paths, so that the scan snapshotter can take the layer back off a kept
   * directory). The overlay snapshotter keeps the step's upperdir as that layer's unpacked copy.
   */
  committed(layer: LayerRef, undo?: readonly string[]): Promise<void>;
  /**
   * Remove: the build is done with this root filesystem. A snapshotter may keep it for the next
   * build (the scan snapshotter keeps the last few stage directories, see kept-rootfs.ts).
   */
  remove(): Promise<void>;
}

export interface RootfsOptions {
  /** Called with the number of layers about to be extracted, when any are. */
  readonly onMaterialize?: (layers: number) => void;
  /** Whether remove() may keep the directory for the next build (a stage's; not a --from image's). */
  readonly keep?: boolean;
}

export interface Snapshotter {
  readonly name: SnapshotterName;
  /** A root filesystem for one stage (or one --from image); nothing is made before its first use. */
  rootfs(purpose: string, options?: RootfsOptions): RootfsSnapshot;
  /** Releases what the snapshotter holds (overlay: unmounts); after every rootfs was removed. */
  close(): Promise<void>;
}
