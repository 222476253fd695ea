import type { Digest } from '../oci/types.js';
import type { CacheMountIdentity, MountSnapshot, StoredMount } from './mount-export.js';
import type { StepRecord } from './step-record.js';
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
  /**
   * Notes an entry the build used or made, so caches that export know the build's chain, with
   * what its key was made of (exported with it, so another machine can explain its misses).
   */
  record(entry: CacheEntry, record?: StepRecord): void;
  /** The entry of the imported caches closest to a step that missed (see step-record.ts). */
  closest(query: StepRecord): ImportedStep | undefined;
  /** Whether an imported cache holds this cache mount's contents (cheap: nothing is fetched). */
  hasMount(mount: CacheMountIdentity): boolean;
  /** What an imported cache holds for a cache mount, without fetching its blob. */
  importedMount(mount: CacheMountIdentity): ImportedMount | undefined;
  /** An imported cache mount, its blob now in the local blob store; undefined when none can be had. */
  fetchMount(mount: CacheMountIdentity, signal?: AbortSignal): Promise<ImportedMount | undefined>;
  /** Whether a `--cache-to` exports cache mounts (`mounts=true`): only then are they snapshotted. */
  readonly exportsMounts: boolean;
  /** A cache mount's contents as this build left them, for the exports that take mounts. */
  recordMount(mount: MountSnapshot): void;
}

export interface ImportedStep {
  /** The cache it is in: `registry:host/repo:tag`, `local:DIR`. */
  readonly source: string;
  readonly record: StepRecord;
  /** When that entry was last exported. */
  readonly used: string;
}

export interface ImportedMount extends StoredMount {
  readonly source: string;
}

/** A cache consulted after a local miss: every --cache-from and --cache-to of a build (remote/remote-caches.ts). */
export interface RemoteCache {
  /** False when nothing is behind it (no --cache-from or --cache-to given, or none usable). */
  readonly active: boolean;
  lookup(key: Digest, local: LayerCache, signal?: AbortSignal): Promise<CacheHit | undefined>;
  record(entry: CacheEntry, record?: StepRecord): void;
  closest?(query: StepRecord): ImportedStep | undefined;
  hasMount?(mount: CacheMountIdentity): boolean;
  importedMount?(mount: CacheMountIdentity): ImportedMount | undefined;
  fetchMount?(
    mount: CacheMountIdentity,
    local: LayerCache,
    signal?: AbortSignal,
  ): Promise<ImportedMount | undefined>;
  readonly exportsMounts?: boolean;
  recordMount?(mount: MountSnapshot): void;
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
    record: (entry, record) => remote?.record(entry, record),
    closest: (query) => remote?.closest?.(query),
    hasMount: (mount) => remote?.hasMount?.(mount) ?? false,
    importedMount: (mount) => remote?.importedMount?.(mount),
    fetchMount: async (mount, signal) => remote?.fetchMount?.(mount, local, signal),
    exportsMounts: remote?.exportsMounts ?? false,
    recordMount: (mount) => remote?.recordMount?.(mount),
  };
}
