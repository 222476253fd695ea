import type { BlobStore } from '../oci/blob-store.js';
import type { LayerRef } from '../oci/image.js';
import { StratumError } from '../errors.js';
import { UNPACKED_STORES, unpackedStoreDir } from '../util/cache-dir.js';
import { inUserNamespace, mapsEveryId } from '../util/user-namespace.js';
import type { Workspace } from '../util/workspace.js';
import { trace } from '../util/trace.js';
import type { UnpackedRootfsCache } from './kept-rootfs.js';
import { OverlayMounts, overlayUnavailable } from './overlay.js';
import { startOverlayHelper } from './overlay-helper.js';
import { OverlaySnapshotter } from './overlay-rootfs.js';
import { ScanSnapshotter } from './scan-rootfs.js';
import type { RootfsOptions, RootfsSnapshot, Snapshotter, SnapshotterName } from './snapshotter.js';
import { UnpackedLayers } from './unpacked-layers.js';

/** What `--snapshotter` and STRATUM_SNAPSHOTTER accept. */
export type SnapshotterRequest = SnapshotterName | 'auto';

export function parseSnapshotterRequest(text: string | undefined): SnapshotterRequest | undefined {
  return text === 'overlay' || text === 'scan' || text === 'auto' ? text : undefined;
}

export interface SnapshotterChoice {
  readonly name: SnapshotterName;
  /** Why (for the build log). */
  readonly reason: string;
}

export interface ChooseOptions {
  readonly cacheDir: string;
  readonly workspace: Workspace;
  readonly blobs: BlobStore;
  readonly requested: SnapshotterRequest;
  /** Stage directories the scan snapshotter keeps between builds. */
  readonly kept: UnpackedRootfsCache;
  /** An upperdir equals its layer (no SOURCE_DATE_EPOCH clamping). */
  readonly adoptUppers: boolean;
  /**
   * A process that builds again and again (`build --watch`) keeps the overlay mounts and their
   * unpacked-layer session here between builds (executor/rebuild-session.ts).
   */
  readonly rebuildSession?: ResourceKeeper;
}

/** Keeps a resource under a key for later builds of this process, and closes it at the end. */
export interface ResourceKeeper {
  keep<T extends { close(): Promise<void> }>(key: string, open: () => Promise<T>): Promise<T>;
}

/** The overlay mounts of a cache dir's unpacked-layer store, or why overlay cannot be used. */
type OpenedOverlay =
  | { readonly mounts: OverlayMounts; readonly close: () => Promise<void> }
  | { readonly mounts?: undefined; readonly why: string; readonly close: () => Promise<void> };

async function openOverlay(dir: string, opaqueXattr: string): Promise<OpenedOverlay> {
  trace('overlay: opening store');
  const layers = await UnpackedLayers.open(dir, opaqueXattr);
  trace('overlay: store open');
  const mounts = new OverlayMounts(layers);
  const why = await overlayUnavailable(mounts);
  trace('overlay: probed');
  if (why === undefined) return { mounts, close: () => layers.close() };
  await layers.close();
  return { why, close: () => Promise.resolve() };
}

/**
 * The snapshotter a build uses, and why: `overlay` when requested or when `auto` finds it works
 * (an overlay-capable kernel, a cache dir not on overlayfs, a test mount; without root, in a
 * user namespace), else `scan`. The probes are overlayUnavailable's; the reason goes to the
 * build log (`snapshotter: overlay (available)`), as the RUN sandbox logs its isolation.
 */
export async function chooseSnapshotter(
  options: ChooseOptions,
): Promise<{ readonly snapshotter: Snapshotter; readonly choice: SnapshotterChoice }> {
  const { requested } = options;
  const scan = (reason: string): { snapshotter: Snapshotter; choice: SnapshotterChoice } => ({
    snapshotter: new ScanSnapshotter(options.workspace, options.blobs, options.kept),
    choice: { name: 'scan', reason },
  });
  if (requested === 'scan') return scan('requested');
  if (process.getuid?.() !== 0) {
    // Outside any user namespace without root, no overlay can be mounted (nor any store made).
    const why =
      'not root, and no user namespace could be made (unprivileged user namespaces are disabled here)';
    if (requested === 'overlay')
      throw new StratumError('UNSUPPORTED', `--snapshotter overlay cannot be used: ${why}`);
    return scan(why);
  }
  // Root of a user namespace (a rootless stratum runs itself in one, see
  // executor/sandbox/rootless-reexec.ts) mounts with the rootless store's user.overlay.* markers.
  const rootless = inUserNamespace();
  const store = rootless ? UNPACKED_STORES.rootless : UNPACKED_STORES.root;
  const dir = unpackedStoreDir(options.cacheDir, store);
  const keeper = options.rebuildSession;
  const opened =
    keeper === undefined
      ? await openOverlay(dir, store.opaqueXattr)
      : await keeper.keep(`overlay\0${dir}`, () => openOverlay(dir, store.opaqueXattr));
  if (opened.mounts === undefined) {
    if (requested === 'overlay')
      throw new StratumError('UNSUPPORTED', `--snapshotter overlay cannot be used: ${opened.why}`);
    return scan(opened.why);
  }
  // The helper process the overlay steps talk to starts now, beside the first mount's preparation.
  startOverlayHelper();
  const where = rootless
    ? mapsEveryId()
      ? ', in a user namespace of every id'
      : ', rootless (user namespace)'
    : '';
  return {
    snapshotter: new OverlaySnapshotter(
      opened.mounts,
      options.blobs,
      options.adoptUppers,
      keeper !== undefined,
    ),
    choice: { name: 'overlay', reason: `${requested === 'overlay' ? 'requested' : 'available'}${where}` },
  };
}

/**
 * A snapshotter chosen when a root filesystem is first needed, so that a fully cached build
 * mounts and probes nothing. Its rootfs handles forward to the chosen snapshotter's.
 */
export class LazySnapshotter {
  private chosen: Promise<Snapshotter> | undefined;

  constructor(
    private readonly options: ChooseOptions,
    private readonly onChoice: (choice: SnapshotterChoice) => void,
  ) {}

  private snapshotter(): Promise<Snapshotter> {
    this.chosen ??= chooseSnapshotter(this.options).then(({ snapshotter, choice }) => {
      this.onChoice(choice);
      return snapshotter;
    });
    return this.chosen;
  }

  rootfs(purpose: string, options: RootfsOptions = {}): RootfsSnapshot {
    let inner: RootfsSnapshot | undefined;
    const get = async (): Promise<RootfsSnapshot> =>
      (inner ??= (await this.snapshotter()).rootfs(purpose, options));
    return {
      view: async (layers: readonly LayerRef[], signal?: AbortSignal) => (await get()).view(layers, signal),
      prepare: async (layers: readonly LayerRef[], signal?: AbortSignal) =>
        (await get()).prepare(layers, signal),
      offline: async () => (await get()).offline?.(),
      commit: async (signal?: AbortSignal) => (await get()).commit(signal),
      committed: async (layer, undo) => (await get()).committed(layer, undo),
      remove: async () => {
        if (inner !== undefined) await inner.remove();
      },
    };
  }

  /** Releases what the chosen snapshotter holds (before the workspace is removed). */
  async close(): Promise<void> {
    if (this.chosen === undefined) return;
    const snapshotter = await this.chosen.catch(() => undefined);
    await snapshotter?.close();
  }
}
