import { resolve } from 'node:path';
import { StratumError, isStratumError, messageOf } from '../errors.js';
import { BlobStore } from '../oci/blob-store.js';
import { sha256Digest } from '../oci/digest.js';
import { directoryAccess } from '../transport/files.js';
import { readLayoutIndex, refName } from '../transport/layout/reader.js';
import { MediaType, type Descriptor, type Digest } from '../oci/types.js';
import {
  directoryState,
  prepareLayout,
  updateLayoutIndex,
  updatedEntries,
} from '../transport/layout/writer.js';
import type { ExportOptions, ExportResult } from './registry-cache.js';
import {
  DEFAULT_MOUNTS_MAX_SIZE,
  boundMounts,
  describeMount,
  mountAttribute,
  mountIdentity,
  warnLeftMounts,
  type CacheMountIdentity,
  type MountSnapshot,
  type StoredMount,
} from './mount-export.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  DEFAULT_MAX_ENTRIES,
  MAX_CONFIG_BYTES,
  cacheConfigOf,
  cacheManifest,
  decodeCacheConfig,
  encodeCacheConfig,
  hitWithLayer,
  layerIntoStore,
  mergeEntries,
  type DecodedCache,
  type StoredCacheEntry,
} from './registry-format.js';
import type { StepRecord } from './step-record.js';
import type { CacheEntry } from './store.js';
import { ImportedCache } from './imported-cache.js';

/**
 * The shared layer cache in a directory (buildx's `--cache-to type=local,dest=DIR` and
 * `--cache-from type=local,src=DIR`): the registry cache's artifact (registry-format.ts: one
 * manifest whose config holds the entries and whose layers are the blobs they name), written
 * into an OCI image layout instead of a registry, under the tag `stratum-cache`. A CI system
 * that saves and restores a directory (actions/cache and the like) shares its cache this way.
 * Blobs are hard-linked from the local cache's store when the filesystem allows, else copied;
 * index.json is replaced atomically under the layout's lock, so readers never see half a cache.
 */

export const LOCAL_CACHE_TAG = 'stratum-cache';

export interface LocalCacheRef {
  readonly dir: string;
  /** `local:DIR`, how messages and `--explain` name this cache. */
  readonly name: string;
  readonly ignoreError: boolean;
  /** `mounts=true` (--cache-to): the cache mounts' contents travel too (mount-export.ts). */
  readonly mounts: boolean;
  readonly mountsMaxSize: number;
}

/** Whether a `--cache-from`/`--cache-to` value is the local form (`type=local,...`). */
export function isLocalCacheSpec(text: string): boolean {
  return text.split(',').some((part) => part.trim() === 'type=local');
}

/**
 * `type=local,dest=DIR[,mode=max][,ignore-error=true|false][,mounts=true][,mounts-max-size=SIZE]` for `--cache-to`,
 * `type=local,src=DIR` for `--cache-from`. Anything else is a USAGE error naming the key.
 */
export function parseLocalCacheRef(text: string, direction: 'from' | 'to'): LocalCacheRef {
  const pathKey = direction === 'from' ? 'src' : 'dest';
  const flag = direction === 'from' ? '--cache-from' : '--cache-to';
  const usage = (reason: string): StratumError =>
    new StratumError('USAGE', `${flag} "${text}": ${reason} (use type=local,${pathKey}=DIR)`);
  const attributes = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`"${part}" is not key=value`);
    const key = part.slice(0, eq).trim();
    if (attributes.has(key)) throw usage(`"${key}" given twice`);
    attributes.set(key, part.slice(eq + 1).trim());
  }
  let ignoreError = false;
  const mountOptions = { mounts: false, mountsMaxSize: DEFAULT_MOUNTS_MAX_SIZE };
  for (const [key, value] of attributes) {
    if (key === 'type' || key === pathKey) continue;
    if (direction === 'to' && mountAttribute(key, value, mountOptions, usage)) continue;
    if (key === 'mode' && direction === 'to') {
      if (value !== 'max')
        throw usage(`mode=${value} is not supported; stratum exports every step (mode=max)`);
    } else if (key === 'ignore-error' && direction === 'to') {
      if (value !== 'true' && value !== 'false') throw usage('ignore-error must be true or false');
      ignoreError = value === 'true';
    } else if (key === 'src' || key === 'dest') {
      throw usage(
        `"${key}" is for ${key === 'src' ? '--cache-from' : '--cache-to'}; ${flag} takes ${pathKey}=`,
      );
    } else {
      throw usage(`attribute "${key}" is not supported`);
    }
  }
  const dir = attributes.get(pathKey) ?? '';
  if (dir === '') throw usage(`${pathKey}= is missing`);
  return { dir: resolve(dir), name: `local:${dir}`, ignoreError, ...mountOptions };
}

/** The cache's entries in the layout at `dir`; a missing directory or tag is NOT_FOUND. */
async function readLocalCache(ref: LocalCacheRef): Promise<DecodedCache> {
  const index = await readLayoutIndex(directoryAccess(ref.dir), ref.name);
  const tagged = index.value.manifests.find((entry) => refName(entry) === LOCAL_CACHE_TAG);
  if (tagged === undefined) {
    throw new StratumError('NOT_FOUND', `${ref.name}: no ${LOCAL_CACHE_TAG} in the layout's index.json`);
  }
  const blobs = new BlobStore(ref.dir);
  const manifest = await blobs.readBytes(tagged.digest, { verify: true, size: tagged.size });
  const config = cacheConfigOf(manifest);
  if (config === undefined) {
    throw new StratumError('INVALID_IMAGE', `${ref.name}: ${LOCAL_CACHE_TAG} is not a stratum cache`);
  }
  if (config.size > MAX_CONFIG_BYTES) {
    throw new StratumError('INVALID_IMAGE', `${ref.name}: cache config of ${config.size} bytes is too large`);
  }
  const bytes = await blobs.readBytes(config.digest, { verify: true, size: config.size });
  return decodeCacheConfig(bytes, ref.name);
}

/**
 * `--cache-from type=local,src=DIR`: read once when the build starts. A missing or unreadable
 * directory is one warning and an empty cache (as an unreachable registry is); a layer that is
 * gone or does not verify is a miss with a warning.
 */
export class LocalCacheSource extends ImportedCache {
  private constructor(
    readonly ref: LocalCacheRef,
    read: DecodedCache,
    private readonly onWarning: ((message: string) => void) | undefined,
  ) {
    super(read);
  }

  /** The exported contents of a cache mount, the blob copied (verified) into `blobs`, or undefined. */
  async getMount(
    mount: CacheMountIdentity,
    blobs: BlobStore,
    signal?: AbortSignal,
  ): Promise<StoredMount | undefined> {
    const stored = this.mounts.get(mountIdentity(mount));
    if (stored === undefined) return undefined;
    const ok = await layerIntoStore(stored.layer, {
      blobs,
      what: `cache ${this.name}: cache mount ${describeMount(stored)}`,
      copyLayer: (layer) => this.copyLayer(layer.descriptor, blobs),
      warn: (line) => this.onWarning?.(line),
      signal,
    });
    if (!ok) this.mounts.delete(mountIdentity(mount));
    return ok ? stored : undefined;
  }

  // Copied, not linked: the directory is the user's to edit, so its bytes are verified.
  private async copyLayer(descriptor: Descriptor, blobs: BlobStore): Promise<void> {
    const source = new BlobStore(this.ref.dir).read(descriptor.digest, {
      verify: true,
      size: descriptor.size,
    });
    source.on('error', () => undefined);
    await blobs.putStream(source, descriptor.digest);
  }

  get name(): string {
    return this.ref.name;
  }

  get size(): number {
    return this.entries.size;
  }

  static async open(
    ref: LocalCacheRef,
    options: { readonly onWarning?: (message: string) => void } = {},
  ): Promise<LocalCacheSource> {
    let read: DecodedCache = { entries: [], mounts: [] };
    try {
      read = await readLocalCache(ref);
    } catch (error) {
      options.onWarning?.(`cache ${ref.name}: not used (${messageOf(error)})`);
    }
    return new LocalCacheSource(ref, read, options.onWarning);
  }

  /** The entry for `key`, its layer copied (verified) into `blobs`, or undefined. */
  get(key: Digest, blobs: BlobStore, signal?: AbortSignal): Promise<CacheEntry | undefined> {
    return hitWithLayer(this.entries, key, {
      cacheName: this.name,
      blobs,
      signal,
      copyLayer: ({ descriptor }) => this.copyLayer(descriptor, blobs),
      warn: (line) => this.onWarning?.(line),
    });
  }
}

/**
 * `--cache-to type=local,dest=DIR`: the entries of every filesystem step, written after a
 * successful build into the layout at DIR, merged with the entries already there (most recent
 * first, capped as the registry form is). Blobs no entry names any more are left in place.
 */
export class LocalCacheExporter {
  private readonly pending = new Map<string, CacheEntry & { readonly record?: StepRecord }>();
  private readonly mounts = new Map<string, MountSnapshot>();

  constructor(readonly ref: LocalCacheRef) {}

  get name(): string {
    return this.ref.name;
  }

  /**
   * Before the build: a dest that exists and is not an OCI layout would be refused after the
   * build's work, so it is a usage error now (with ignore-error=true, a warning at export).
   */
  async check(): Promise<void> {
    if (this.ref.ignoreError) return;
    if ((await directoryState(this.ref.dir)) === 'other') {
      throw new StratumError(
        'USAGE',
        `cache ${this.ref.name}: exists and is not an OCI image layout (no oci-layout file); refusing to write into it`,
      );
    }
  }

  add(entry: CacheEntry, record?: StepRecord): void {
    this.pending.delete(entry.key);
    this.pending.set(entry.key, record === undefined ? entry : { ...entry, record });
  }

  /** A cache mount's contents, as this build left them (only with `mounts=true`). */
  addMount(mount: MountSnapshot): void {
    if (this.ref.mounts) this.mounts.set(mountIdentity(mount), mount);
  }

  async flush(blobs: BlobStore, options: ExportOptions = {}): Promise<ExportResult> {
    const ref = this.ref;
    const warn = (message: string): void => options.onWarning?.(message);
    let older: StoredCacheEntry[] = [];
    let olderMounts: StoredMount[] = [];
    try {
      ({ entries: older, mounts: olderMounts } = await readLocalCache(ref));
    } catch (error) {
      if (!isStratumError(error) || error.code !== 'NOT_FOUND') {
        warn(`cache ${ref.name}: existing cache unreadable, replaced (${messageOf(error)})`);
      }
    }
    await prepareLayout(ref.dir);
    const target = new BlobStore(ref.dir);

    const used = new Date().toISOString();
    const fresh = [...this.pending.values()].reverse().map((entry) => ({ ...entry, used }));
    const counts = { uploaded: 0, mounted: 0, existed: 0 };
    const missing = new Set<Digest>();
    const layers = uniqueLayers(fresh);
    for (const layer of layers) {
      options.signal?.throwIfAborted();
      const how = await ensureBlob(target, blobs, layer);
      if (how === 'missing') missing.add(layer.digest);
      else counts[how]++;
    }
    if (missing.size > 0) {
      warn(
        `cache ${ref.name}: ${missing.size} layer(s) are not in the local blob store; their entries are not exported`,
      );
    }
    const usable = fresh.filter(
      (entry) => entry.layer === null || !missing.has(entry.layer.descriptor.digest),
    );
    // Older entries whose layer someone removed from the directory are dropped, not exported broken.
    const present: StoredCacheEntry[] = [];
    for (const entry of older) {
      if (entry.layer === null) present.push(entry);
      else if ((await target.size(entry.layer.descriptor.digest)) === entry.layer.descriptor.size)
        present.push(entry);
    }
    const entries = mergeEntries(usable, present, options.maxEntries ?? DEFAULT_MAX_ENTRIES);

    // Cache mounts: this build's first, then the older ones still whole in the directory,
    // bounded by mounts-max-size (the newest win). A blob already there is not written again.
    const presentMounts: StoredMount[] = [];
    for (const mount of olderMounts) {
      if ((await target.size(mount.layer.descriptor.digest)) === mount.layer.descriptor.size)
        presentMounts.push(mount);
    }
    const freshMounts = [...this.mounts.values()].map((mount) => ({ ...mount, used }));
    const bounded = boundMounts(freshMounts, presentMounts, ref.mountsMaxSize);
    warnLeftMounts(ref.name, bounded.left, freshMounts, ref.mountsMaxSize, warn);
    const mounts: StoredMount[] = [];
    let mountBlobsWritten = 0;
    for (const mount of bounded.kept) {
      options.signal?.throwIfAborted();
      let how = await ensureBlob(target, blobs, mount.layer.descriptor);
      if (how === 'missing' && (await options.fetchMount?.(mount)) === true)
        how = await ensureBlob(target, blobs, mount.layer.descriptor);
      if (how === 'missing') {
        warn(`cache ${ref.name}: cache mount ${describeMount(mount)}: its blob is gone; not exported`);
        continue;
      }
      if (how !== 'existed') mountBlobsWritten++;
      mounts.push(mount);
    }

    const configBytes = encodeCacheConfig(entries, mounts);
    const config: Descriptor = {
      mediaType: CACHE_CONFIG_MEDIA_TYPE,
      digest: sha256Digest(configBytes),
      size: configBytes.length,
    };
    await target.putBytes(configBytes, config.digest);
    const manifestBytes = cacheManifest(config, entries, used, mounts);
    const digest = sha256Digest(manifestBytes);
    await target.putBytes(manifestBytes, digest);
    const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest, size: manifestBytes.length };
    await updateLayoutIndex(
      ref.dir,
      (existing) => updatedEntries(existing, descriptor, [LOCAL_CACHE_TAG]),
      options.signal,
    );
    return {
      layers: layers.length,
      ...counts,
      entries: entries.length,
      mounts: mounts.length,
      mountBlobsSent: mountBlobsWritten,
      digest,
    };
  }
}

/** Puts a blob into the directory's store: there already, hard-linked, else copied (verified). */
async function ensureBlob(
  target: BlobStore,
  blobs: BlobStore,
  blob: Descriptor,
): Promise<'existed' | 'mounted' | 'uploaded' | 'missing'> {
  if ((await target.size(blob.digest)) === blob.size) return 'existed';
  if ((await blobs.size(blob.digest)) !== blob.size) return 'missing';
  if (await target.linkFrom(blobs.path(blob.digest), blob.digest)) return 'mounted';
  await target.putStream(blobs.read(blob.digest, { verify: true, size: blob.size }), blob.digest);
  return 'uploaded';
}

function uniqueLayers(entries: readonly StoredCacheEntry[]): Descriptor[] {
  const seen = new Set<string>();
  const out: Descriptor[] = [];
  for (const entry of entries) {
    if (entry.layer === null || seen.has(entry.layer.descriptor.digest)) continue;
    seen.add(entry.layer.descriptor.digest);
    out.push(entry.layer.descriptor);
  }
  return out;
}
