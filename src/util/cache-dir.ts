import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * The cache directory's layout, in one place. Every module that reads or writes below the cache
 * directory takes its path from here, so the layout is written down once and `cache prune`,
 * `cache du` and a build agree on what lives where:
 *
 *   blobs/sha256/<hex>     layer blobs (an OCI layout's blob store; the local image store
 *                          hard-links from here, so bytes are stored once)
 *   entries/<hex>.json     one cache entry per key: the layer the step produced (or none)
 *   explain/<hex>.json     the key components of the last build of each Dockerfile step
 *   stat-cache.json        content digests of context files by stat, to avoid re-reading
 *   leases/                what running builds hold of blobs/ (util/leases.ts)
 *   mounts/                RUN --mount=type=cache directories (executor/cache-mounts.ts)
 *   rootfs/                the scan snapshotter's kept root filesystems (executor/unpacked.ts)
 *   overlay/               layers unpacked for overlayfs, as root (snapshot/unpacked-layers.ts)
 *   overlay-rootless/      the same in a user namespace (user.overlay.* xattrs)
 *   tmp/                   owned temporary directories (util/temp-dir.ts), unless
 *                          $STRATUM_TMPDIR says elsewhere
 */
export interface CacheDirLayout {
  readonly root: string;
  /** The BlobStore root (it keeps blobs in `blobs/` below it). */
  readonly blobStore: string;
  readonly entries: string;
  readonly explain: string;
  readonly statCache: string;
  readonly leases: string;
  readonly mounts: string;
  readonly keptRootfs: string;
  readonly tmp: string;
}

export function cacheDirLayout(root: string, env: NodeJS.ProcessEnv = process.env): CacheDirLayout {
  return {
    root,
    blobStore: root,
    entries: join(root, 'entries'),
    explain: join(root, 'explain'),
    statCache: join(root, 'stat-cache.json'),
    leases: join(root, 'leases'),
    mounts: join(root, 'mounts'),
    keptRootfs: join(root, 'rootfs'),
    tmp: env['STRATUM_TMPDIR'] ?? join(root, 'tmp'),
  };
}

/**
 * The stores of layers unpacked for overlayfs: as root of the host (trusted.overlay.* markers)
 * and in a user namespace (user.overlay.*, which a rootless mount reads); they are kept apart
 * because a layer unpacked one way reads wrongly the other.
 */
export const UNPACKED_STORES = {
  root: { dir: 'overlay', opaqueXattr: 'trusted.overlay.opaque' },
  rootless: { dir: 'overlay-rootless', opaqueXattr: 'user.overlay.opaque' },
} as const;

export type UnpackedStore = (typeof UNPACKED_STORES)[keyof typeof UNPACKED_STORES];

export function unpackedStoreDir(root: string, store: UnpackedStore): string {
  return join(root, store.dir);
}

/** `$STRATUM_CACHE_DIR`, else `$XDG_CACHE_HOME/stratum`, else `~/.cache/stratum`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['STRATUM_CACHE_DIR']) return env['STRATUM_CACHE_DIR'];
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'stratum');
  return join(homedir(), '.cache', 'stratum');
}
