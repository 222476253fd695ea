import { chmod, lchown } from 'node:fs/promises';
import { join } from 'node:path';
import { inUserNamespace, mapsEveryId } from '../oci/user-namespace.js';
import type { BlobStore } from '../oci/blob-store.js';
import { fsPath } from '../oci/file-names.js';
import type { LayerRef } from '../oci/image.js';
import { StratumError } from '../errors.js';
import type { LayerDiff } from '../snapshot/index.js';
import { OverlaySnapshotter, overlayUnavailable } from '../snapshot/overlay.js';
import { UNPACKED_STORES, UnpackedLayers } from '../snapshot/unpacked-layers.js';
import type { RootlessOwners } from './context/apply.js';
import { checkOwnerMapped, chooseIdMapping } from './sandbox/id-mapping.js';
import { OverlayRootfs } from './overlay-rootfs.js';
import { Rootfs, type StageRootfs } from './rootfs.js';
import type { UnpackedRootfsCache } from './unpacked.js';
import type { Workspace } from './workspace.js';
import type { BuildSession } from './session.js';

export type SnapshotterName = 'overlay' | 'scan' | 'auto';

export function parseSnapshotterName(text: string | undefined): SnapshotterName | undefined {
  return text === 'overlay' || text === 'scan' || text === 'auto' ? text : undefined;
}

export interface SnapshotterChoice {
  readonly name: 'overlay' | 'scan';
  /** Why (for the build log). */
  readonly reason: string;
}

/** The snapshotter a build (or a session of builds) uses, and how to let go of it. */
interface ChosenSnapshotter {
  readonly choice: SnapshotterChoice;
  readonly overlay?: OverlaySnapshotter;
  /** Unmounts what was mounted through it and removes its unpacked-layer session. */
  readonly close: () => Promise<void>;
  /** Unmounts what was mounted through it, keeping the session for the next build. */
  readonly sweep: () => Promise<void>;
}

/**
 * Makes stage rootfs for the snapshotter this build uses. The choice is made when a rootfs is
 * first needed (a fully cached build mounts and probes nothing): `overlay` when requested or
 * when `auto` finds it works (an overlay-capable kernel, a cache dir not on overlayfs, a test
 * mount; without root, in a user namespace), else `scan`, with the reason in the build log.
 */
export class RootfsFactory {
  private choice: Promise<ChosenSnapshotter> | undefined;
  /** The overlay rootfs of this build's stages: a failed build's are released by close(). */
  private readonly overlays: OverlayRootfs[] = [];

  /**
   * How COPY gives owners other than root: undefined as root of the host; as root of a user
   * namespace (a rootless build), those the namespace maps; without root outside any namespace
   * (none could be made), none: the files stay ours, which the layer writer records as root.
   */
  async rootlessOwners(): Promise<RootlessOwners | undefined> {
    const mapping = await chooseIdMapping();
    if (mapping.kind === 'host') return undefined;
    if (mapping.kind !== 'namespace') {
      // What is on disk is ours, which reads as root (the layer writer records it so).
      const ownUid = process.getuid?.();
      const ownGid = process.getgid?.();
      return {
        fromHost: (owner) => ({
          uid: owner.uid === ownUid ? 0 : owner.uid,
          gid: owner.gid === ownGid ? 0 : owner.gid,
        }),
        check: (owner) => {
          if (owner.uid !== 0 || owner.gid !== 0)
            throw new StratumError(
              'UNSUPPORTED',
              `files owned by uid ${owner.uid} gid ${owner.gid} need root, or a user namespace (stratum could not make one: enable unprivileged user namespaces, sysctl user.max_user_namespaces)`,
            );
        },
        give: () => Promise.resolve(),
      };
    }
    return {
      fromHost: (owner) => owner,
      check: (owner) => {
        checkOwnerMapped(mapping, owner);
      },
      give: async (ops) => {
        for (const { path, uid, gid, mode } of ops) {
          await lchown(fsPath(path), uid, gid);
          // chown clears setuid/setgid: the mode goes on again (-1: a symlink, nothing to do).
          if (mode >= 0) await chmod(fsPath(path), mode);
        }
      },
    };
  }

  constructor(
    private readonly options: {
      readonly cacheDir: string;
      readonly workspace: Workspace;
      readonly blobs: BlobStore;
      readonly requested: SnapshotterName;
      readonly unpacked: UnpackedRootfsCache;
      /** An upperdir equals its layer (no SOURCE_DATE_EPOCH clamping). */
      readonly adoptUppers: boolean;
      readonly onChoice: (choice: SnapshotterChoice) => void;
      /** Builds of one process share the choice and its overlay session (see session.ts). */
      readonly session?: BuildSession;
    },
  ) {}

  private choose(): Promise<ChosenSnapshotter> {
    this.choice ??= (async () => {
      const { session, cacheDir, requested } = this.options;
      const chosen =
        session === undefined
          ? await this.pick()
          : await session.snapshotter(`${cacheDir}\0${requested}`, () => this.pick());
      this.options.onChoice(chosen.choice);
      return chosen;
    })();
    return this.choice;
  }

  private async pick(): Promise<ChosenSnapshotter> {
    const { requested } = this.options;
    const none = (): Promise<void> => Promise.resolve();
    let result: ChosenSnapshotter;
    if (requested === 'scan') {
      result = { choice: { name: 'scan', reason: 'requested' }, close: none, sweep: none };
    } else if (process.getuid?.() !== 0) {
      // Outside any user namespace without root, no overlay can be mounted (nor any store made).
      const why =
        'not root, and no user namespace could be made (unprivileged user namespaces are disabled here)';
      if (requested === 'overlay') {
        throw new StratumError('UNSUPPORTED', `--snapshotter overlay cannot be used: ${why}`);
      }
      result = { choice: { name: 'scan', reason: why }, close: none, sweep: none };
    } else {
      // Root of a user namespace (a rootless stratum runs itself in one, see
      // src/user-namespace.ts) mounts with the rootless store's user.overlay.* markers.
      const rootless = inUserNamespace();
      const store = rootless ? UNPACKED_STORES.rootless : UNPACKED_STORES.root;
      const layers = await UnpackedLayers.open(join(this.options.cacheDir, store.dir), store.opaqueXattr);
      const overlay = new OverlaySnapshotter(layers);
      const why = await overlayUnavailable(overlay);
      if (why === undefined) {
        result = {
          close: () => layers.close(),
          sweep: () => layers.sweep(),
          choice: {
            name: 'overlay',
            reason: `${requested === 'overlay' ? 'requested' : 'available'}${rootless ? (mapsEveryId() ? ', in a user namespace of every id' : ', rootless (user namespace)') : ''}`,
          },
          overlay,
        };
      } else {
        await layers.close();
        if (requested === 'overlay') {
          throw new StratumError('UNSUPPORTED', `--snapshotter overlay cannot be used: ${why}`);
        }
        result = { choice: { name: 'scan', reason: why }, close: none, sweep: none };
      }
    }
    return result;
  }

  private overlayRootfs(
    overlay: OverlaySnapshotter,
    onMaterialize?: (layers: number) => void,
  ): OverlayRootfs {
    const rootfs = new OverlayRootfs(overlay, this.options.blobs, onMaterialize, this.options.adoptUppers);
    this.overlays.push(rootfs);
    return rootfs;
  }

  /** A rootfs for one stage (or one `--from` image). */
  create(purpose: string, onMaterialize?: (layers: number) => void, keepable = true): StageRootfs {
    let inner: StageRootfs | undefined;
    const get = async (): Promise<StageRootfs> => {
      if (inner !== undefined) return inner;
      const { overlay } = await this.choose();
      inner ??=
        overlay !== undefined
          ? this.overlayRootfs(overlay, onMaterialize)
          : new Rootfs(
              this.options.workspace,
              this.options.blobs,
              purpose,
              onMaterialize,
              keepable ? this.options.unpacked : undefined,
            );
      return inner;
    };
    return {
      sync: async (layers: readonly LayerRef[], signal?: AbortSignal) => (await get()).sync(layers, signal),
      prepare: async (signal?: AbortSignal) => (await get()).prepare(signal),
      commit: async (signal?: AbortSignal): Promise<LayerDiff> => (await get()).commit(signal),
      recordLayerApplied: async (layer, undo) => (await get()).recordLayerApplied(layer, undo),
      keep: async () => {
        if (inner !== undefined) await inner.keep();
      },
    };
  }

  /** Unmounts every overlay this build mounted (before the workspace is removed). */
  async close(): Promise<void> {
    const chosen = await this.choice?.catch(() => undefined);
    // A session's snapshotter outlives the build, which must still leave nothing mounted: a
    // failed build's stages never got to keep() theirs.
    if (this.options.session !== undefined) {
      for (const rootfs of this.overlays) await rootfs.release();
      // Whatever an interrupted step had mounted and not yet handed to its rootfs.
      if (this.overlays.length > 0) await chosen?.sweep();
    } else await chosen?.close();
  }
}
