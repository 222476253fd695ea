import { resolve } from 'node:path';
import { StratumError, isStratumError, messageOf } from '../errors.js';
import { BlobStore } from '../oci/blob-store.js';
import { sha256Digest } from '../oci/digest.js';
import { directoryAccess } from '../oci/files.js';
import { readLayoutIndex, refName } from '../oci/layout-reader.js';
import { MediaType, type Descriptor, type Digest } from '../oci/types.js';
import {
  directoryState,
  prepareLayout,
  updateLayoutIndex,
  updatedEntries,
} from '../oci-writer/layout-writer.js';
import type { ExportOptions, ExportResult } from './registry-cache.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  DEFAULT_MAX_ENTRIES,
  MAX_CONFIG_BYTES,
  cacheConfigOf,
  cacheManifest,
  decodeCacheConfig,
  encodeCacheConfig,
  hitWithLayer,
  mergeEntries,
  type StoredCacheEntry,
} from './registry-format.js';
import type { CacheEntry } from './store.js';

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
}

/** Whether a `--cache-from`/`--cache-to` value is the local form (`type=local,...`). */
export function isLocalCacheSpec(text: string): boolean {
  return text.split(',').some((part) => part.trim() === 'type=local');
}

/**
 * `type=local,dest=DIR[,mode=max][,ignore-error=true|false]` for `--cache-to`,
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
  for (const [key, value] of attributes) {
    if (key === 'type' || key === pathKey) continue;
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
  return { dir: resolve(dir), name: `local:${dir}`, ignoreError };
}

/** The cache's entries in the layout at `dir`; a missing directory or tag is NOT_FOUND. */
async function readLocalCache(ref: LocalCacheRef): Promise<StoredCacheEntry[]> {
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
export class LocalCacheSource {
  private readonly entries: Map<string, StoredCacheEntry>;

  private constructor(
    readonly ref: LocalCacheRef,
    entries: readonly StoredCacheEntry[],
    private readonly onWarning: ((message: string) => void) | undefined,
  ) {
    this.entries = new Map(entries.map((entry) => [entry.key, entry]));
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
    let entries: StoredCacheEntry[] = [];
    try {
      entries = await readLocalCache(ref);
    } catch (error) {
      options.onWarning?.(`cache ${ref.name}: not used (${messageOf(error)})`);
    }
    return new LocalCacheSource(ref, entries, options.onWarning);
  }

  /** The entry for `key`, its layer copied (verified) into `blobs`, or undefined. */
  get(key: Digest, blobs: BlobStore, signal?: AbortSignal): Promise<CacheEntry | undefined> {
    return hitWithLayer(this.entries, key, {
      cacheName: this.name,
      blobs,
      signal,
      // Copied, not linked: the directory is the user's to edit, so its bytes are verified.
      copyLayer: async ({ descriptor }) => {
        const source = new BlobStore(this.ref.dir).read(descriptor.digest, {
          verify: true,
          size: descriptor.size,
        });
        source.on('error', () => undefined);
        await blobs.putStream(source, descriptor.digest);
      },
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
  private readonly pending = new Map<string, CacheEntry>();

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

  add(entry: CacheEntry): void {
    this.pending.delete(entry.key);
    this.pending.set(entry.key, entry);
  }

  async flush(blobs: BlobStore, options: ExportOptions = {}): Promise<ExportResult> {
    const ref = this.ref;
    const warn = (message: string): void => options.onWarning?.(message);
    let older: StoredCacheEntry[] = [];
    try {
      older = await readLocalCache(ref);
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
      if ((await target.size(layer.digest)) === layer.size) {
        counts.existed++;
      } else if ((await blobs.size(layer.digest)) !== layer.size) {
        missing.add(layer.digest);
      } else if (await target.linkFrom(blobs.path(layer.digest), layer.digest)) {
        counts.mounted++;
      } else {
        await target.putStream(blobs.read(layer.digest, { verify: true, size: layer.size }), layer.digest);
        counts.uploaded++;
      }
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

    const configBytes = encodeCacheConfig(entries);
    const config: Descriptor = {
      mediaType: CACHE_CONFIG_MEDIA_TYPE,
      digest: sha256Digest(configBytes),
      size: configBytes.length,
    };
    await target.putBytes(configBytes, config.digest);
    const manifestBytes = cacheManifest(config, entries, used);
    const digest = sha256Digest(manifestBytes);
    await target.putBytes(manifestBytes, digest);
    const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest, size: manifestBytes.length };
    await updateLayoutIndex(
      ref.dir,
      (existing) => updatedEntries(existing, descriptor, [LOCAL_CACHE_TAG]),
      options.signal,
    );
    return { layers: layers.length, ...counts, entries: entries.length, digest };
  }
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
