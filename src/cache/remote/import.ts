import { StratumError, messageOf } from '../../errors.js';
import type { BlobStore } from '../../oci/blob-store.js';
import type { Descriptor, Digest } from '../../oci/types.js';
import { describeMount, mountIdentity, type CacheMountIdentity, type StoredMount } from '../mount-export.js';
import type { CacheEntry } from '../store.js';
import { DiffIdCheck, diffIdCheckable } from './diffid.js';
import { MAX_CONFIG_BYTES, cacheConfigOf, decodeCacheConfig, type StoredCacheEntry } from './format.js';
import type { CacheTransport } from './transport.js';

/** What a cache holds, as read through its transport. */
export interface ReadArtifact {
  readonly entries: StoredCacheEntry[];
  readonly mounts: StoredMount[];
  /** The manifest's media type, when the tag holds something that is not a stratum cache. */
  readonly foreign?: string;
}

/** Reads a cache's manifest and config; no manifest is an empty cache. */
export async function readArtifact(transport: CacheTransport, signal?: AbortSignal): Promise<ReadArtifact> {
  const manifest = await transport.readManifest(signal);
  if (manifest === undefined) return { entries: [], mounts: [] };
  const config = cacheConfigOf(manifest.bytes);
  if (config === undefined) return { entries: [], mounts: [], foreign: manifest.mediaType };
  if (config.size > MAX_CONFIG_BYTES) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${transport.name}: cache config of ${config.size} bytes is too large`,
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of transport.readBlob(config, signal)) chunks.push(chunk as Buffer);
  return decodeCacheConfig(Buffer.concat(chunks), transport.name);
}

export interface ImportOptions {
  readonly signal?: AbortSignal;
  /** One line per problem that turned into a miss or an empty cache. */
  readonly onWarning?: (message: string) => void;
}

/**
 * `--cache-from`: what one cache holds, whatever carried it, read once when the build starts:
 * its entries by key and its cache mounts by identity. A build never fails because of it: an
 * unreachable or unreadable cache is one warning and an empty cache; a layer that cannot be
 * had, or does not verify, is a miss with a warning, and is not asked for again.
 */
export class ImportedCache {
  private readonly entries: Map<string, StoredCacheEntry>;
  private readonly mounts: Map<string, StoredMount>;

  private constructor(
    private readonly transport: CacheTransport,
    read: ReadArtifact,
    private readonly onWarning: ((message: string) => void) | undefined,
    /** Warnings so far (also sent to onWarning as they happen). */
    readonly warnings: string[],
  ) {
    this.entries = new Map(read.entries.map((entry) => [entry.key, entry]));
    this.mounts = new Map(read.mounts.map((mount) => [mountIdentity(mount), mount]));
  }

  static async open(transport: CacheTransport, options: ImportOptions = {}): Promise<ImportedCache> {
    const warnings: string[] = [];
    const warn = (message: string): void => {
      warnings.push(message);
      options.onWarning?.(message);
    };
    let read: ReadArtifact = { entries: [], mounts: [] };
    try {
      read = await readArtifact(transport, options.signal);
      if (read.foreign !== undefined) {
        warn(`cache ${transport.name}: holds a ${read.foreign}, not a stratum cache; not used`);
      }
    } catch (error) {
      if (options.signal?.aborted === true) {
        await transport.close?.();
        throw error;
      }
      warn(`cache ${transport.name}: not used (${messageOf(error)})`);
    }
    return new ImportedCache(transport, read, options.onWarning, warnings);
  }

  /** `registry:host/repo:tag` or `local:DIR`: where a hit came from, for `--explain` and progress. */
  get name(): string {
    return this.transport.name;
  }

  /** How many entries the cache holds (after a failed open: 0). */
  get size(): number {
    return this.entries.size;
  }

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** Every entry, with what its step's key was made of where the exporter knew it. */
  stored(): Iterable<StoredCacheEntry> {
    return this.entries.values();
  }

  /**
   * The entry for `key`, with its layer blob in `blobs` (fetched and verified, skipped when
   * already there), or undefined: not in this cache, or its layer could not be had.
   */
  async get(key: Digest, blobs: BlobStore, signal?: AbortSignal): Promise<CacheEntry | undefined> {
    const stored = this.entries.get(key);
    if (stored === undefined) return undefined;
    // The entry as the local cache keeps it: `used` and `record` are the artifact's.
    const entry: CacheEntry = {
      key: stored.key,
      layer: stored.layer,
      createdBy: stored.createdBy,
      instruction: stored.instruction,
      created: stored.created,
    };
    if (entry.layer === null) return entry;
    const what = `cache ${this.name}: layer ${entry.layer.descriptor.digest} of "${entry.instruction}"`;
    const ok = await this.blobInto(entry.layer, blobs, what, 'step runs', signal);
    if (!ok) this.entries.delete(key);
    return ok ? entry : undefined;
  }

  hasMount(mount: CacheMountIdentity): boolean {
    return this.mounts.has(mountIdentity(mount));
  }

  /** What this cache holds for a cache mount, without fetching its blob. */
  peekMount(mount: CacheMountIdentity): StoredMount | undefined {
    return this.mounts.get(mountIdentity(mount));
  }

  /** A cache mount's exported contents, the blob fetched (verified, as a layer is) into `blobs`. */
  async getMount(
    mount: CacheMountIdentity,
    blobs: BlobStore,
    signal?: AbortSignal,
  ): Promise<StoredMount | undefined> {
    const stored = this.mounts.get(mountIdentity(mount));
    if (stored === undefined) return undefined;
    const what = `cache ${this.name}: cache mount ${describeMount(stored)}`;
    const ok = await this.blobInto(stored.layer, blobs, what, undefined, signal);
    if (!ok) this.mounts.delete(mountIdentity(mount));
    return ok ? stored : undefined;
  }

  async close(): Promise<void> {
    await this.transport.close?.();
  }

  /**
   * Makes sure `blobs` holds a layer (or a mount's blob): there already, else fetched. False,
   * with one warning naming what happens instead (`outcome`), when it cannot be had; an abort
   * is thrown.
   */
  private async blobInto(
    layer: NonNullable<CacheEntry['layer']>,
    blobs: BlobStore,
    what: string,
    outcome: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    if ((await blobs.size(layer.descriptor.digest)) === layer.descriptor.size) return true;
    try {
      signal?.throwIfAborted();
      await this.fetchLayer(layer, what, blobs, signal);
      return true;
    } catch (error) {
      if (signal?.aborted === true) throw error;
      const line = `${what}: not used${outcome === undefined ? '' : `, ${outcome}`} (${messageOf(error).replace(`${what}: `, '')})`;
      this.warnings.push(line);
      this.onWarning?.(line);
      return false;
    }
  }

  /**
   * Copies a layer into `blobs`, its digest checked by the transport and (gzip, zstd) its
   * diff_id here as it streams: an entry pairs both, and the diff_id goes into the image config
   * of every build that hits it, so one written by a buggy or hostile client must not be trusted.
   */
  private async fetchLayer(
    { descriptor, diffId }: { readonly descriptor: Descriptor; readonly diffId: Digest },
    what: string,
    blobs: BlobStore,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const checkable = diffIdCheckable(descriptor.mediaType);
    if (checkable === 'none' && diffId !== descriptor.digest) {
      throw new StratumError('DIGEST_MISMATCH', `uncompressed layer with diff_id ${diffId}`);
    }
    const fetched = this.transport.readBlob(descriptor, signal);
    let body = fetched;
    if (checkable === 'gzip' || checkable === 'zstd') {
      const check = new DiffIdCheck(diffId, what, checkable);
      fetched.on('error', (error) => check.destroy(error));
      body = fetched.pipe(check);
    }
    // A small layer can arrive, and fail its check, before putStream's pipeline (behind a
    // mkdir) listens; without a listener of our own that error would be uncaught. pipeline
    // still rejects with it, as it reads the stream's stored error.
    body.on('error', () => undefined);
    await blobs.putStream(body, descriptor.digest);
  }
}
