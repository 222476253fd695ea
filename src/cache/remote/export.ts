import { StratumError, isStratumError, messageOf } from '../../errors.js';
import type { BlobStore } from '../../oci/blob-store.js';
import { sha256Digest } from '../../oci/digest.js';
import type { Descriptor, Digest } from '../../oci/types.js';
import { forEachLimited } from '../../util/limit.js';
import {
  boundMounts,
  describeMount,
  mountIdentity,
  warnLeftMounts,
  type CacheMountIdentity,
  type MountSnapshot,
  type StoredMount,
} from '../mount-export.js';
import type { StepRecord } from '../step-record.js';
import type { CacheEntry } from '../store.js';
import type { ExportAttributes } from './cache-ref.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  DEFAULT_MAX_ENTRIES,
  cacheManifest,
  encodeCacheConfig,
  mergeEntries,
  referencedLayers,
  type StoredCacheEntry,
} from './format.js';
import { readArtifact, type ReadArtifact } from './import.js';
import type { CacheTransport, PutBlobOptions, PutOutcome } from './transport.js';

export interface ExportOptions {
  readonly signal?: AbortSignal;
  /** Repositories of the same registry to mount layers from (besides those this process saw them in). */
  readonly mountFrom?: readonly string[];
  /** Entries kept under the tag (default 2000, the most recently exported). */
  readonly maxEntries?: number;
  readonly onWarning?: (message: string) => void;
  /** Layers sent at once (default 4, as push). */
  readonly concurrency?: number;
  /**
   * Puts a cache mount's blob into the local blob store (from the `--cache-from` it was imported
   * from); true when it did. For mounts carried over unrestored, whose blob is only fetched when
   * the destination does not hold it already.
   */
  readonly fetchMount?: (mount: CacheMountIdentity) => Promise<boolean>;
}

export interface ExportResult {
  /** Distinct layers this build's entries name (each made sure of in the cache). */
  readonly layers: number;
  /** Of those, how many were uploaded, mounted (or hard-linked: no byte copied), or already there. */
  readonly uploaded: number;
  readonly mounted: number;
  readonly existed: number;
  /** Entries under the tag after the merge. */
  readonly entries: number;
  /** Cache mounts under the tag after the merge (mounts=true), and how many blobs of them were sent. */
  readonly mounts: number;
  readonly mountBlobsSent: number;
  /** The cache manifest's digest. */
  readonly digest: Digest;
}

/**
 * `--cache-to`: collects the entries of every filesystem step of the build (hits and misses),
 * then after a successful build writes them through its transport: each layer made sure of in
 * the cache (there already, else mounted or linked, else copied; once each), then one manifest
 * whose config merges these entries with those already under the tag, most recent first, capped.
 * Blobs no entry names any more are left where they are (a registry's GC takes them).
 */
export class CacheExporter {
  private readonly pending = new Map<string, CacheEntry & { readonly record?: StepRecord }>();
  private readonly mounts = new Map<string, MountSnapshot>();

  constructor(
    readonly transport: CacheTransport,
    readonly attributes: ExportAttributes,
  ) {}

  get name(): string {
    return this.transport.name;
  }

  /**
   * Before the build: a destination that can never be written would be refused after the
   * build's work, so it is a usage error now (with ignore-error=true, a warning at export).
   */
  async check(): Promise<void> {
    if (!this.attributes.ignoreError) await this.transport.checkWritable?.();
  }

  /** Records a step's entry (the latest for a key wins), with its key's components when known. */
  add(entry: CacheEntry, record?: StepRecord): void {
    this.pending.delete(entry.key);
    this.pending.set(entry.key, record === undefined ? entry : { ...entry, record });
  }

  /** A cache mount's contents, as this build left them (only with `mounts=true`). */
  addMount(mount: MountSnapshot): void {
    if (this.attributes.mounts) this.mounts.set(mountIdentity(mount), mount);
  }

  async flush(blobs: BlobStore, options: ExportOptions = {}): Promise<ExportResult> {
    const warn = (message: string): void => options.onWarning?.(message);
    const older = await this.readOlder(warn, options.signal);
    // Newest first: the last steps of this build lead, so capping drops the oldest.
    const used = new Date().toISOString();
    const fresh = [...this.pending.values()].reverse().map((entry) => ({ ...entry, used }));
    const layers = await this.sendLayers(fresh, blobs, options, warn);

    // Older entries and mounts whose blob someone removed are dropped, not exported broken,
    // where asking is cheap; a registry refuses the manifest instead (below).
    const present = async (blob: Descriptor | undefined): Promise<boolean> =>
      blob === undefined || !this.transport.cheapBlobChecks || this.transport.hasBlob(blob, options.signal);
    const olderEntries = await filterAsync(older.entries, (entry) => present(entry.layer?.descriptor));
    const olderMounts = await filterAsync(older.mounts, (mount) => present(mount.layer.descriptor));
    const freshMounts = [...this.mounts.values()].map((mount) => ({ ...mount, used }));
    const sent = await this.sendMounts(freshMounts, olderMounts, blobs, options, warn);

    const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    let entries = mergeEntries(layers.usable, olderEntries, max);
    let mounts = sent.mounts;
    let digest: Digest;
    try {
      digest = await this.write(entries, mounts, used, options.signal);
    } catch (error) {
      // An older entry's layer is gone from the repository (deleted by hand, or a registry
      // that lost it): the registry refuses the manifest. Keep this build's entries only.
      if (!isStratumError(error) || !/BLOB_UNKNOWN/.test(error.message) || olderEntries.length === 0)
        throw error;
      warn(`cache ${this.name}: older entries name layers the registry lost; kept only this build's entries`);
      const freshIds = new Set(freshMounts.map(mountIdentity));
      entries = mergeEntries(layers.usable, [], max);
      mounts = mounts.filter((mount) => freshIds.has(mountIdentity(mount)));
      digest = await this.write(entries, mounts, used, options.signal);
    }
    return {
      layers: layers.count,
      ...layers.how,
      entries: entries.length,
      mounts: mounts.length,
      mountBlobsSent: sent.blobsSent,
      digest,
    };
  }

  /**
   * Makes sure the cache holds every layer this build's entries name (once each, a few at
   * once); the entries whose layer could not be had anywhere are left out, with a warning.
   */
  private async sendLayers(
    fresh: readonly StoredCacheEntry[],
    blobs: BlobStore,
    options: ExportOptions,
    warn: (message: string) => void,
  ): Promise<{
    readonly usable: StoredCacheEntry[];
    readonly count: number;
    readonly how: Record<'uploaded' | 'mounted' | 'existed', number>;
  }> {
    const { signal, mountFrom } = options;
    const layers = referencedLayers(fresh);
    const how = { uploaded: 0, mounted: 0, existed: 0 };
    const missing = new Set<Digest>();
    await forEachLimited(layers, options.concurrency ?? 4, async (layer) => {
      signal?.throwIfAborted();
      const outcome = await ensureBlob(this.transport, blobs, layer, { signal, mountFrom });
      if (outcome === 'missing') missing.add(layer.digest);
      else how[outcome]++;
    });
    if (missing.size > 0) {
      warn(
        `cache ${this.name}: ${missing.size} layer(s) are neither in the local blob store nor in the cache; their entries are not exported`,
      );
    }
    const usable = fresh.filter(
      (entry) => entry.layer === null || !missing.has(entry.layer.descriptor.digest),
    );
    return { usable, count: layers.length, how };
  }

  /**
   * Cache mounts: this build's first, then the older ones, bounded by mounts-max-size (the
   * newest win). A blob the cache holds is not sent again; an older mount's blob is the
   * cache's own already.
   */
  private async sendMounts(
    fresh: readonly StoredMount[],
    older: readonly StoredMount[],
    blobs: BlobStore,
    options: ExportOptions,
    warn: (message: string) => void,
  ): Promise<{ readonly mounts: StoredMount[]; readonly blobsSent: number }> {
    const { signal } = options;
    const bounded = boundMounts(fresh, older, this.attributes.mountsMaxSize);
    warnLeftMounts(this.name, bounded.left, fresh, this.attributes.mountsMaxSize, warn);
    const freshIds = new Set(fresh.map(mountIdentity));
    const mounts: StoredMount[] = [];
    let blobsSent = 0;
    for (const mount of bounded.kept) {
      if (!freshIds.has(mountIdentity(mount))) {
        mounts.push(mount);
        continue;
      }
      signal?.throwIfAborted();
      const blob = mount.layer.descriptor;
      let how = await ensureBlob(this.transport, blobs, blob, { signal });
      if (how === 'missing' && (await options.fetchMount?.(mount)) === true)
        how = await ensureBlob(this.transport, blobs, blob, { signal });
      if (how === 'missing') {
        warn(`cache ${this.name}: cache mount ${describeMount(mount)}: its blob is gone; not exported`);
        continue;
      }
      if (how !== 'existed') blobsSent++;
      mounts.push(mount);
    }
    return { mounts, blobsSent };
  }

  /**
   * What the destination holds already, to merge with. None yet is an empty cache; an
   * unreadable one is replaced, with a warning; an image under the tag is never overwritten.
   * Anything else (the network, credentials) fails the export.
   */
  private async readOlder(warn: (message: string) => void, signal?: AbortSignal): Promise<ReadArtifact> {
    const none: ReadArtifact = { entries: [], mounts: [] };
    let read: ReadArtifact;
    try {
      read = await readArtifact(this.transport, signal);
    } catch (error) {
      // Nothing there yet (a directory that is not one, a layout without the tag).
      if (isStratumError(error) && error.code === 'NOT_FOUND') return none;
      if (!isStratumError(error) || (error.code !== 'INVALID_IMAGE' && error.code !== 'DIGEST_MISMATCH'))
        throw error;
      warn(`cache ${this.name}: existing cache unreadable, replaced (${messageOf(error)})`);
      return none;
    }
    if (read.foreign !== undefined) {
      throw new StratumError(
        'USAGE',
        `cache ${this.name}: the tag holds a ${read.foreign}, not a stratum cache; refusing to overwrite it (choose another tag)`,
      );
    }
    return read;
  }

  /** The config blob, then the manifest under the tag; the manifest's digest. */
  private async write(
    entries: readonly StoredCacheEntry[],
    mounts: readonly StoredMount[],
    created: string,
    signal: AbortSignal | undefined,
  ): Promise<Digest> {
    const bytes = encodeCacheConfig(entries, mounts);
    const config: Descriptor = {
      mediaType: CACHE_CONFIG_MEDIA_TYPE,
      digest: sha256Digest(bytes),
      size: bytes.length,
    };
    if (!(await this.transport.hasBlob(config, signal)))
      await this.transport.putBlob(config, bytes, { signal });
    return this.transport.putManifest(cacheManifest(config, entries, created, mounts), signal);
  }
}

/** Makes sure the cache holds a blob: there already, else put from `blobs`. */
async function ensureBlob(
  transport: CacheTransport,
  blobs: BlobStore,
  blob: Descriptor,
  options: PutBlobOptions,
): Promise<'existed' | PutOutcome> {
  if (await transport.hasBlob(blob, options.signal)) return 'existed';
  return transport.putBlob(blob, blobs, options);
}

async function filterAsync<T>(items: readonly T[], keep: (item: T) => Promise<boolean>): Promise<T[]> {
  const out: T[] = [];
  for (const item of items) if (await keep(item)) out.push(item);
  return out;
}
