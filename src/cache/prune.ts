import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sweepBlobs } from '../oci/blob-sweep.js';
import type { Digest } from '../oci/types.js';
import type { CacheEntryInfo, LayerCache } from './store.js';

/**
 * Cache housekeeping: what is there (`ls`, `du`) and making room (`prune`). Pruning removes
 * entries (oldest use first), then the blobs no remaining entry, no protected image and no
 * running process (its lease, see oci/leases.ts) needs, then partial blobs a killed build left
 * behind. The rest of the cache directory (unpacked
 * filesystems, build workspaces) belongs to the snapshotters and the executor: src/cache-admin.ts
 * sweeps those.
 */
export interface CacheUsage {
  readonly entries: number;
  readonly layerEntries: number;
  /** Distinct layer blobs the entries refer to, and their bytes. */
  readonly layers: number;
  readonly layerBytes: number;
  /** Everything in the blob directory (shared with the local image store by default). */
  readonly blobBytes: number;
  readonly mountBytes: number;
  /** Unpacked layers (overlay snapshotter) and stage filesystems kept (scan snapshotter). */
  readonly unpackedBytes: number;
  /**
   * Everything above on disk, each file once (hard links between the blob directory, mounts
   * and unpacked filesystems counted once), plus leftovers of killed builds.
   */
  readonly totalBytes: number;
}

export async function cacheUsage(cache: LayerCache): Promise<CacheUsage> {
  const entries = await cache.list();
  const layers = new Map<Digest, number>();
  for (const entry of entries)
    if (entry.layer !== null) layers.set(entry.layer.descriptor.digest, entry.layer.descriptor.size);
  const blobDir = join(cache.blobs.root, 'blobs');
  const seen = new Set<string>();
  let totalBytes = 0;
  for (const dir of [blobDir, cache.layout.mounts, cache.layout.keptRootfs, cache.layout.tmp])
    totalBytes += await directoryBytes(dir, seen);
  return {
    entries: entries.length,
    layerEntries: entries.filter((entry) => entry.layer !== null).length,
    layers: layers.size,
    layerBytes: [...layers.values()].reduce((sum, size) => sum + size, 0),
    blobBytes: await directoryBytes(blobDir),
    mountBytes: await directoryBytes(cache.layout.mounts),
    unpackedBytes:
      (await directoryBytes(cache.layout.keptRootfs)) +
      // Root's and a rootless user's unpacked-layer stores (snapshot/unpacked-layers.ts).
      (await directoryBytes(join(cache.root, 'overlay', 'layers'))) +
      (await directoryBytes(join(cache.root, 'overlay-rootless', 'layers'))),
    totalBytes,
  };
}

export interface PruneOptions {
  /** Keep at most this many bytes of layers (least recently used entries go first). */
  readonly keepStorage?: number;
  /** Remove entries not used for this many milliseconds. */
  readonly olderThanMs?: number;
  /**
   * Blobs that must stay (every blob of the local image store's images, when it shares the
   * blob directory); asked during the sweep, after the running processes' leases are read.
   */
  readonly protectedBlobs?: () => Promise<ReadonlySet<string>>;
  readonly now?: Date;
}

export interface PruneResult {
  readonly removedEntries: number;
  readonly removedBlobs: number;
  readonly freedBytes: number;
}

export async function pruneCache(cache: LayerCache, options: PruneOptions = {}): Promise<PruneResult> {
  const now = (options.now ?? new Date()).getTime();
  const entries = (await cache.list()).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
  const keep: CacheEntryInfo[] = [];
  let removedEntries = 0;
  for (const entry of entries) {
    if (options.olderThanMs !== undefined && now - entry.lastUsed.getTime() > options.olderThanMs) {
      await cache.remove(entry.key);
      removedEntries++;
    } else keep.push(entry);
  }
  if (options.keepStorage !== undefined) {
    const sizes = new Map<string, number>();
    for (const entry of keep)
      if (entry.layer) sizes.set(entry.layer.descriptor.digest, entry.layer.descriptor.size);
    let total = [...sizes.values()].reduce((sum, size) => sum + size, 0);
    while (total > options.keepStorage && keep.length > 0) {
      const oldest = keep.shift()!;
      await cache.remove(oldest.key);
      removedEntries++;
      if (
        oldest.layer &&
        !keep.some((entry) => entry.layer?.descriptor.digest === oldest.layer?.descriptor.digest)
      ) {
        total -= oldest.layer.descriptor.size;
      }
    }
  }

  // The entries are read again inside the sweep, after the leases: a build that wrote an
  // entry and ended meanwhile is seen one way or the other.
  const swept = await sweepBlobs(cache.blobs, {
    referenced: async () => {
      const referenced = new Set<string>(await (options.protectedBlobs?.() ?? []));
      for (const entry of await cache.list()) if (entry.layer) referenced.add(entry.layer.descriptor.digest);
      return referenced;
    },
  });
  const removedBlobs = swept.removedBlobs;
  let freedBytes = swept.freedBytes;
  freedBytes += await cache.blobs.removeAbandonedTemporaries();
  return { removedEntries, removedBlobs, freedBytes };
}

/**
 * Bytes on disk below `dir`: `lstat`, so a symlink counts as itself and never as what it
 * points to (unpacked filesystems are full of them), and a file with several hard links counts
 * once (`seen`, shared across calls, holds device:inode pairs already counted).
 */
export async function directoryBytes(dir: string, seen: Set<string> = new Set()): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    const info = await lstat(path).catch(() => undefined);
    if (info === undefined) continue;
    if (info.isDirectory()) {
      total += await directoryBytes(path, seen);
      continue;
    }
    if (info.nlink > 1) {
      const id = `${info.dev}:${info.ino}`;
      if (seen.has(id)) continue;
      seen.add(id);
    }
    total += info.size;
  }
  return total;
}

/** `24h`, `7d`, `30m`, `90s`, `1h30m`. */
export function parseDuration(text: string): number | undefined {
  const units: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text.trim()) return undefined;
  return parts.reduce((sum, part) => sum + Number(part[1]) * units[part[2]!]!, 0);
}
