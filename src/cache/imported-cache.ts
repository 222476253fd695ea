import { mountIdentity, type CacheMountIdentity, type StoredMount } from './mount-export.js';
import type { StoredCacheEntry } from './registry-format.js';

/**
 * What an imported cache holds, whatever carried it (a local directory, a registry): its entries
 * by key and its cache mounts by identity, read once when the build starts. The transports
 * (LocalCacheSource, RegistryCacheSource) add only how blobs are fetched.
 */
export class ImportedCache {
  protected readonly entries: Map<string, StoredCacheEntry>;
  protected readonly mounts: Map<string, StoredMount>;

  protected constructor(read: {
    readonly entries: readonly StoredCacheEntry[];
    readonly mounts: readonly StoredMount[];
  }) {
    this.entries = new Map(read.entries.map((entry) => [entry.key, entry]));
    this.mounts = new Map(read.mounts.map((mount) => [mountIdentity(mount), mount]));
  }

  /** Every entry, with what its step's key was made of where the exporter knew it. */
  stored(): Iterable<StoredCacheEntry> {
    return this.entries.values();
  }

  hasMount(mount: CacheMountIdentity): boolean {
    return this.mounts.has(mountIdentity(mount));
  }

  /** What this cache holds for a cache mount, without fetching its blob. */
  peekMount(mount: CacheMountIdentity): StoredMount | undefined {
    return this.mounts.get(mountIdentity(mount));
  }
}
