import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { StratumError } from './errors.js';
import { defaultCacheDir } from './executor/build.js';
import { Workspace } from './executor/workspace.js';
import {
  cacheUsage,
  directoryBytes,
  parseDuration,
  parseSize,
  pruneCache,
  type CacheUsage,
  type PruneOptions,
  type PruneResult,
} from './cache/prune.js';
import { UNPACKED_STORES, pruneUnpackedLayers } from './snapshot/unpacked-layers.js';
import { removeTree } from './oci/remove-tree.js';
import { LayerCache, type CacheEntryInfo } from './cache/store.js';
import { ImageStore, defaultDataDir } from './oci-writer/store.js';

/**
 * `stratum cache ls|du|prune` as library calls. By default the cache keeps its blobs in the
 * local image store (so bytes are stored once); pruning then keeps every blob a stored image
 * still refers to.
 */
export interface CacheLocation {
  readonly cacheDir?: string;
  readonly dataDir?: string;
}

function open(location: CacheLocation): { cache: LayerCache; store: ImageStore | undefined } {
  const dataDir = location.dataDir ?? defaultDataDir();
  if (location.cacheDir !== undefined) return { cache: new LayerCache(location.cacheDir), store: undefined };
  const store = new ImageStore(dataDir);
  return { cache: new LayerCache(defaultCacheDir(), store.blobs), store };
}

export async function listCache(location: CacheLocation = {}): Promise<CacheEntryInfo[]> {
  const entries = await open(location).cache.list();
  return entries.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
}

export async function cacheDiskUsage(location: CacheLocation = {}): Promise<CacheUsage> {
  return cacheUsage(open(location).cache);
}

export async function pruneLayerCache(
  location: CacheLocation,
  options: { readonly keepStorage?: string; readonly olderThan?: string },
): Promise<PruneResult> {
  const { cache, store } = open(location);
  const keepStorage = options.keepStorage === undefined ? undefined : parseSize(options.keepStorage);
  const olderThanMs = options.olderThan === undefined ? undefined : parseDuration(options.olderThan);
  if (options.keepStorage !== undefined && keepStorage === undefined) {
    throw new StratumError(
      'USAGE',
      `--keep-storage ${options.keepStorage}: expected a size such as 10GB or 500MB`,
    );
  }
  if (options.olderThan !== undefined && olderThanMs === undefined) {
    throw new StratumError(
      'USAGE',
      `--older-than ${options.olderThan}: expected a duration such as 24h or 7d`,
    );
  }
  const protectedBlobs = new Set<string>();
  if (store !== undefined) {
    for (const image of await store.list()) {
      const source = await store.open(image.name);
      protectedBlobs.add(source.descriptor.digest);
      protectedBlobs.add(source.manifest.value.config.digest);
      for (const layer of source.manifest.value.layers) protectedBlobs.add(layer.digest);
      await source.close();
    }
  }
  return pruneCacheDir(cache, {
    ...(keepStorage === undefined ? {} : { keepStorage }),
    ...(olderThanMs === undefined ? {} : { olderThanMs }),
    protectedBlobs,
  });
}

/**
 * Prunes the layer cache (src/cache), then what else lives in the cache directory: the
 * snapshotters' unpacked filesystems and the workspaces of killed builds.
 */
export async function pruneCacheDir(cache: LayerCache, options: PruneOptions = {}): Promise<PruneResult> {
  const result = await pruneCache(cache, options);
  let freedBytes = result.freedBytes;
  // Kept unpacked filesystems only save time; pruning makes the room they take. (Rootless, the
  // CLI runs this as root of the builds' user namespace, where files of subordinate ids, USER
  // 1000's, are ours to remove: see src/user-namespace.ts.)
  freedBytes += await directoryBytes(join(cache.root, 'rootfs'));
  await removeTree(join(cache.root, 'rootfs'));
  // Unpacked layers (overlay snapshotter) likewise, except those a running build has leased.
  for (const store of Object.values(UNPACKED_STORES)) {
    const storeDir = join(cache.root, store.dir);
    // A store this cache never had stays absent (pruning used to create it empty).
    if (!existsSync(storeDir)) continue;
    const unpackedBefore = await directoryBytes(join(storeDir, 'layers'));
    await pruneUnpackedLayers(storeDir);
    freedBytes += unpackedBefore - (await directoryBytes(join(storeDir, 'layers')));
  }
  // Build workspaces of builds that no longer run (killed): their names carry the build's PID.
  for (const tmp of new Set([
    join(cache.root, 'tmp'),
    process.env['STRATUM_TMPDIR'] ?? join(cache.root, 'tmp'),
  ])) {
    const before = await directoryBytes(tmp);
    await Workspace.removeAbandoned(tmp);
    freedBytes += before - (await directoryBytes(tmp));
  }
  return { ...result, freedBytes };
}
