import type { Digest } from '../oci/types.js';
import type { CacheEntry, LayerCache } from './store.js';

/**
 * What the executor sees of the layer cache: one object, whatever is behind it (the local store,
 * registries given with --cache-from/--cache-to, later others). The executor keys a step, asks
 * get(), and after a step records what it used or made; it never learns where an entry lives.
 */
export interface CacheHit {
  readonly entry: CacheEntry;
  /** Where the entry came from: `local`, or `registry:host/repo:tag`. */
  readonly source: string;
}

export interface CacheSource {
  /** The entry for a key, from the first cache that has it (a remote hit is stored locally). */
  get(key: Digest, signal?: AbortSignal): Promise<CacheHit | undefined>;
  /** Stores an entry this build made. */
  put(entry: CacheEntry): Promise<void>;
  /** Notes an entry the build used or made, so caches that export know the build's chain. */
  record(entry: CacheEntry): void;
}

/** A cache consulted after a local miss (the registry caches of SharedCaches). */
export interface RemoteCache {
  /** False when nothing is behind it (no --cache-from or --cache-to given, or none usable). */
  readonly active: boolean;
  lookup(key: Digest, local: LayerCache, signal?: AbortSignal): Promise<CacheHit | undefined>;
  record(entry: CacheEntry): void;
}

/** The local store first, then the remote caches, if any. */
export function layeredCache(local: LayerCache, remote: RemoteCache | undefined): CacheSource {
  return {
    async get(key, signal) {
      const entry = await local.get(key);
      if (entry !== undefined) return { entry, source: 'local' };
      return remote?.lookup(key, local, signal);
    },
    put: (entry) => local.put(entry),
    record: (entry) => remote?.record(entry),
  };
}
