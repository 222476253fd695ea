import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseByteSize } from '../util/byte-size.js';
import { StratumError } from '../errors.js';
import { UNPACKED_STORES, cacheDirLayout, defaultCacheDir, unpackedStoreDir } from '../util/cache-dir.js';
import { Workspace } from '../util/workspace.js';
import {
  cacheUsage,
  directoryBytes,
  parseDuration,
  pruneCache,
  type CacheUsage,
  type PruneOptions,
  type PruneResult,
} from './prune.js';
import { pruneUnpackedLayers } from '../snapshot/unpacked-layers.js';
import { removeTree } from '../util/remove-tree.js';
import { LayerCache, type CacheEntryInfo } from './store.js';
import { ImageStore, defaultDataDir } from '../transport/store/store.js';

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
  const keepStorage = options.keepStorage === undefined ? undefined : parseByteSize(options.keepStorage);
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
  return pruneCacheDir(cache, {
    ...(keepStorage === undefined ? {} : { keepStorage }),
    ...(olderThanMs === undefined ? {} : { olderThanMs }),
    // Every blob of every stored image: index, each platform's manifest, config and layers.
    ...(store === undefined ? {} : { protectedBlobs: () => store.referencedBlobs() }),
  });
}

/**
 * Prunes the layer cache (src/cache), then what else lives in the cache directory: the
 * snapshotters' unpacked filesystems and the workspaces of killed builds.
 */
export async function pruneCacheDir(cache: LayerCache, options: PruneOptions = {}): Promise<PruneResult> {
  const result = await pruneCache(cache, options);
  // Bytes are counted for what this prune removes, each path measured just before it goes:
  // measuring whole directories before and after counted what running builds wrote meanwhile
  // (a negative "freed").
  const seen = new Set<string>();
  let freedBytes = result.freedBytes;
  const counted = async (path: string): Promise<void> => {
    freedBytes += await directoryBytes(path, seen);
  };
  // Kept unpacked filesystems only save time; pruning makes the room they take. A running build
  // claims one by renaming it into its workspace, so each is taken the same way before it is
  // removed: whichever rename wins, nobody removes a filesystem in use. (Rootless, the CLI runs
  // this as root of the builds' user namespace, where files of subordinate ids, USER 1000's,
  // are ours to remove: see src/user-namespace.ts.)
  await removeKeptFilesystems(cache.layout.keptRootfs, counted);
  // Unpacked layers (overlay snapshotter) likewise, except those a running build has leased.
  for (const store of Object.values(UNPACKED_STORES)) {
    const storeDir = unpackedStoreDir(cache.root, store);
    // A store this cache never had stays absent: pruning does not create it.
    if (!existsSync(storeDir)) continue;
    await pruneUnpackedLayers(storeDir, { beforeRemove: counted });
  }
  // Build workspaces of builds that no longer run (killed): their names carry the build's PID.
  for (const tmp of new Set([cacheDirLayout(cache.root, {}).tmp, cache.layout.tmp])) {
    await Workspace.removeAbandoned(tmp, { beforeRemove: counted });
  }
  return { ...result, freedBytes };
}

/** Removes each kept filesystem (and its sidecar) that no build claims first. */
async function removeKeptFilesystems(
  dir: string,
  beforeRemove: (path: string) => Promise<void>,
): Promise<void> {
  for (const name of await readdir(dir).catch(() => [])) {
    const path = join(dir, name);
    if (name.endsWith('.json')) {
      await rm(path, { force: true });
      continue;
    }
    // Aside under a dotted name no build looks for (claims go through the sidecars).
    const aside = join(dir, `.pruning-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(path, aside);
    } catch {
      continue; // a build claimed it, or another prune took it
    }
    await beforeRemove(aside);
    await removeTree(aside);
  }
}
