import { StratumError } from '../errors.js';
import { LayerCache } from './store.js';
import { sweepBlobs } from '../oci/blob-sweep.js';
import { normalizeImageName } from '../oci/reference.js';
import { defaultCacheDir } from '../util/cache-dir.js';
import { ImageStore, defaultDataDir } from '../transport/store/store.js';

/**
 * `stratum rmi NAME…` (Docker's spelling; `images rm` too): removes names from the local image
 * store, then at once the blobs of those images that nothing else needs: not another image
 * (two names for one image share everything), not an entry of the layer cache (a rebuild
 * still hits; those layers go at the next `cache prune` once their entries do), not a running
 * build or copy (its lease). Every name is checked before any is removed: a missing one is an
 * error and removes nothing.
 */
export interface RemoveImagesResult {
  /** The names removed, normalised (`app` → `app:latest`). */
  readonly removed: readonly string[];
  readonly removedBlobs: number;
  readonly freedBytes: number;
}

export async function removeImages(
  names: readonly string[],
  options: { readonly dataDir?: string; readonly cacheDir?: string } = {},
): Promise<RemoveImagesResult> {
  const store = new ImageStore(options.dataDir ?? defaultDataDir());
  const entries = [];
  for (const name of names) {
    const entry = await store.resolve(name);
    if (entry === undefined)
      throw new StratumError(
        'NOT_FOUND',
        `image "${normalizeImageName(name)}" is not in the local store (${store.root})`,
      );
    entries.push(entry);
  }
  const candidates = new Set<string>();
  for (const entry of entries) await store.collectBlobs(entry, candidates);
  for (const name of names) await store.untag(name);
  // The default layer cache keeps its blobs in this store (src/cache-admin.ts).
  const cache = new LayerCache(options.cacheDir ?? defaultCacheDir(), store.blobs);
  const swept = await sweepBlobs(store.blobs, {
    candidates,
    referenced: async () => {
      const referenced = await store.referencedBlobs();
      for (const entry of await cache.list())
        if (entry.layer !== null) referenced.add(entry.layer.descriptor.digest);
      return referenced;
    },
  });
  return { removed: names.map(normalizeImageName), ...swept };
}
