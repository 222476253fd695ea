import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from './blob-store.js';
import { withSweep } from '../util/leases.js';

/**
 * The one way blobs leave a shared store (`cache prune`, `rmi`): a mark and sweep under the
 * store's sweep marker (leases.ts). `referenced` is asked only after the live leases are read,
 * so an image a build stored just before its lease ended is seen either way.
 */
export interface SweepResult {
  readonly removedBlobs: number;
  readonly freedBytes: number;
}

export interface SweepOptions {
  /** Every digest something on disk refers to (stored images, cache entries). */
  readonly referenced: () => Promise<ReadonlySet<string>>;
  /** Only these digests may go (`rmi`: the removed image's blobs); default: any blob. */
  readonly candidates?: ReadonlySet<string>;
}

export async function sweepBlobs(store: BlobStore, options: SweepOptions): Promise<SweepResult> {
  if (store.leaseDir === undefined) throw new Error(`sweepBlobs: ${store.root} is not a leased store`);
  return withSweep(store.leaseDir, async (leased) => {
    const referenced = await options.referenced();
    let removedBlobs = 0;
    let freedBytes = 0;
    const blobs = join(store.root, 'blobs');
    for (const algorithm of await readdir(blobs).catch(() => [])) {
      for (const name of await readdir(join(blobs, algorithm)).catch(() => [])) {
        // Partial blobs (`.tmp-<pid>-…`) are their writer's; removeAbandonedTemporaries takes a dead one's.
        if (name.startsWith('.')) continue;
        const digest = `${algorithm}:${name}`;
        if (options.candidates !== undefined && !options.candidates.has(digest)) continue;
        if (leased.has(digest) || referenced.has(digest)) continue;
        const path = join(blobs, algorithm, name);
        const info = await stat(path).catch(() => undefined);
        if (info === undefined) continue;
        await rm(path, { force: true });
        removedBlobs++;
        // A blob hard-linked elsewhere (an unpacked layer, a --cache-to directory) frees nothing yet.
        if (info.nlink <= 1) freedBytes += info.size;
      }
    }
    return { removedBlobs, freedBytes };
  });
}
