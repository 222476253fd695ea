// The registry cache (--cache-from/--cache-to). Over ~400 lines because the reader
// (RegistryCacheSource) and the writer (RegistryCacheExporter) share the reference syntax and
// the fetch/verify path; the wire format is already apart in registry-format.ts.
import { Readable } from 'node:stream';
import { StratumError, isStratumError, messageOf } from '../errors.js';
import { sha256Digest } from '../oci/digest.js';
import type { BlobStore } from '../oci/blob-store.js';
import { MediaType, type Descriptor, type Digest } from '../oci/types.js';
import { RegistryClient } from '../registry/client.js';
import { forEachLimited } from '../util/limit.js';
import { parseRegistryReference, type RegistryReference } from '../registry/reference.js';
import { RepositoryClient } from '../registry/repository.js';
import { DiffIdCheck, diffIdCheckable } from './registry-diffid.js';
import { ImportedCache } from './imported-cache.js';
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
import type { StepRecord } from './step-record.js';
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
  type StoredCacheEntry,
} from './registry-format.js';
import type { CacheEntry } from './store.js';

/**
 * The shared layer cache in a registry (`--cache-from registry:REF`, `--cache-to registry:REF`):
 * the entries of the local LayerCache (key → layer) stored as one OCI artifact per tag, the
 * layers as ordinary blobs of the cache repository, so a fleet of CI machines shares its cache
 * through the registry it already pushes to. The format is in registry-format.ts and docs/ci.md.
 */

export const DEFAULT_CACHE_TAG = 'stratum-cache';

export interface CacheRef {
  readonly registry: string;
  readonly repository: string;
  /** The tag the cache is stored under; absent only when read by digest. */
  readonly tag?: string;
  readonly digest?: string;
  /** `registry:host/repo:tag`, how messages and `--explain` name this cache. */
  readonly name: string;
  /** BuildKit's `ignore-error=true`: a failed export is a warning, not a failed build. */
  readonly ignoreError: boolean;
  /** `mounts=true` (--cache-to): the cache mounts' contents travel too (mount-export.ts). */
  readonly mounts: boolean;
  readonly mountsMaxSize: number;
}

/**
 * `registry:HOST/REPO[:TAG]` (tag default `stratum-cache`), or BuildKit's
 * `type=registry,ref=HOST/REPO[:TAG][,mode=max][,ignore-error=true|false]`, with stratum's
 * `mounts=true` and `mounts-max-size=SIZE` (cache mount contents, for --cache-to).
 */
export function parseCacheRef(text: string): CacheRef {
  const usage = (reason: string): StratumError =>
    new StratumError(
      'USAGE',
      `cache "${text}": ${reason} (use registry:HOST/REPOSITORY[:TAG] or type=registry,ref=HOST/REPOSITORY[:TAG])`,
    );
  let reference: string;
  let ignoreError = false;
  const mountOptions = { mounts: false, mountsMaxSize: DEFAULT_MOUNTS_MAX_SIZE };
  if (text.startsWith('registry:')) {
    reference = text.slice('registry:'.length);
  } else if (text.startsWith('type=')) {
    const attributes = new Map<string, string>();
    for (const part of text.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw usage(`"${part}" is not key=value`);
      const key = part.slice(0, eq).trim();
      if (attributes.has(key)) throw usage(`"${key}" given twice`);
      attributes.set(key, part.slice(eq + 1).trim());
    }
    if (attributes.get('type') !== 'registry') {
      throw usage(`cache type "${attributes.get('type') ?? ''}" is not supported, only registry or local`);
    }
    reference = attributes.get('ref') ?? '';
    if (reference === '') throw usage('ref= is missing');
    for (const [key, value] of attributes) {
      if (key === 'type' || key === 'ref') continue;
      if (mountAttribute(key, value, mountOptions, usage)) continue;
      if (key === 'mode') {
        // stratum always exports every step of every stage it built: BuildKit's mode=max.
        if (value !== 'max')
          throw usage(`mode=${value} is not supported; stratum exports every step (mode=max)`);
      } else if (key === 'ignore-error') {
        if (value !== 'true' && value !== 'false') throw usage(`ignore-error must be true or false`);
        ignoreError = value === 'true';
      } else {
        throw usage(`attribute "${key}" is not supported`);
      }
    }
  } else {
    throw usage('unknown cache kind');
  }
  if (reference === '') throw usage('no reference');
  if (reference.includes('://')) throw usage('give the reference without a transport');
  let parsed: RegistryReference;
  try {
    // parseRegistryReference adds `latest` to a reference without a tag; the cache's default
    // is its own tag, so that pointing --cache-to at an image's repository never hits `latest`.
    const lastSlash = reference.lastIndexOf('/');
    const hasTag = reference.indexOf(':', lastSlash + 1) !== -1 || reference.includes('@');
    parsed = parseRegistryReference(hasTag ? reference : `${reference}:${DEFAULT_CACHE_TAG}`);
  } catch (error) {
    if (isStratumError(error)) throw usage(error.message);
    throw error;
  }
  const name = `registry:${parsed.registry}/${parsed.repository}${
    parsed.digest !== undefined ? `@${parsed.digest}` : `:${parsed.tag ?? DEFAULT_CACHE_TAG}`
  }`;
  return {
    registry: parsed.registry,
    repository: parsed.repository,
    ...(parsed.digest !== undefined ? { digest: parsed.digest } : { tag: parsed.tag ?? DEFAULT_CACHE_TAG }),
    name,
    ignoreError,
    ...mountOptions,
  };
}

export interface RegistryCacheOptions {
  /** Registry hosts reached over plain HTTP (as for pull and push). */
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
  /** A client to share (its sessions and tokens); default: one of its own, closed by close(). */
  readonly client?: RegistryClient;
  /** One line per problem that turned into a miss or an empty cache. */
  readonly onWarning?: (message: string) => void;
}

interface ReadCache {
  readonly entries: StoredCacheEntry[];
  readonly mounts: StoredMount[];
  /** Set when the tag holds something that is not a stratum cache. */
  readonly foreign?: string;
}

/** Reads a cache manifest and its config; a missing tag or repository is an empty cache. */
async function readCache(
  repo: RepositoryClient,
  ref: CacheRef,
  signal: AbortSignal | undefined,
): Promise<ReadCache> {
  const signalOption = signal ? { signal } : {};
  let manifest;
  try {
    // Every manifest type is accepted, so that an image under the tag (Docker's types
    // included) is seen for what it is, rather than a registry's 404 read as "no cache yet".
    manifest = await repo.getManifest(ref.digest ?? ref.tag ?? DEFAULT_CACHE_TAG, signalOption);
  } catch (error) {
    // 404: MANIFEST_UNKNOWN (no such tag) or NAME_UNKNOWN (no such repository yet).
    if (isStratumError(error) && error.code === 'NOT_FOUND') return { entries: [], mounts: [] };
    throw error;
  }
  const config = cacheConfigOf(manifest.bytes);
  if (config === undefined) return { entries: [], mounts: [], foreign: manifest.mediaType };
  if (config.size > MAX_CONFIG_BYTES) {
    throw new StratumError('INVALID_IMAGE', `${ref.name}: cache config of ${config.size} bytes is too large`);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of repo.fetchBlob(config.digest, { size: config.size, ...signalOption })) {
    chunks.push(chunk as Buffer);
  }
  return decodeCacheConfig(Buffer.concat(chunks), ref.name);
}

/**
 * `--cache-from registry:REF`: the entries of one cache tag, read once when the build starts.
 * A build never fails because of it: an unreachable registry or an unreadable cache is one
 * warning and an empty cache; a layer that cannot be fetched or does not verify is a miss.
 */
export class RegistryCacheSource extends ImportedCache {
  private constructor(
    readonly ref: CacheRef,
    private readonly repo: RepositoryClient,
    private readonly ownClient: boolean,
    read: { readonly entries: readonly StoredCacheEntry[]; readonly mounts: readonly StoredMount[] },
    private readonly onWarning: ((message: string) => void) | undefined,
    /** Warnings so far (also sent to onWarning as they happen). */
    readonly warnings: string[],
  ) {
    super(read);
  }

  /**
   * The exported contents of a cache mount, its blob downloaded (verified, as a layer is) into
   * `blobs`, or undefined: not in this cache, or not to be had (a warning).
   */
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
      copyLayer: (layer, what) => this.copyLayer(layer, what, blobs, signal),
      warn: (line) => {
        this.warnings.push(line);
        this.onWarning?.(line);
      },
      signal,
    });
    if (!ok) this.mounts.delete(mountIdentity(mount));
    return ok ? stored : undefined;
  }

  /** Downloads a layer into `blobs`, checking its digest and (gzip, zstd) its diff_id as it streams. */
  private async copyLayer(
    { descriptor, diffId }: NonNullable<CacheEntry['layer']>,
    what: string,
    blobs: BlobStore,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const checkable = diffIdCheckable(descriptor.mediaType);
    if (checkable === 'none' && diffId !== descriptor.digest) {
      throw new StratumError('DIGEST_MISMATCH', `uncompressed layer with diff_id ${diffId}`);
    }
    const fetched = this.repo.fetchBlob(descriptor.digest, {
      size: descriptor.size,
      ...(signal ? { signal } : {}),
    });
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

  /** `registry:host/repo:tag`: where a hit came from, for `--explain` and progress. */
  get name(): string {
    return this.ref.name;
  }

  /** How many entries the cache holds (after a failed open: 0). */
  get size(): number {
    return this.entries.size;
  }

  static async open(
    ref: CacheRef | string,
    options: RegistryCacheOptions = {},
  ): Promise<RegistryCacheSource> {
    const cacheRef = typeof ref === 'string' ? parseCacheRef(ref) : ref;
    const client =
      options.client ?? new RegistryClient({ insecureRegistries: options.insecureRegistries ?? [] });
    const repo = new RepositoryClient(client, cacheRef.registry, cacheRef.repository, cacheRef.name);
    const warnings: string[] = [];
    const warn = (message: string): void => {
      warnings.push(message);
      options.onWarning?.(message);
    };
    let read: ReadCache = { entries: [], mounts: [] };
    try {
      read = await readCache(repo, cacheRef, options.signal);
      if (read.foreign !== undefined) {
        warn(`cache ${cacheRef.name}: holds a ${read.foreign}, not a stratum cache; not used`);
      }
    } catch (error) {
      if (options.signal?.aborted === true) {
        if (options.client === undefined) await client.close();
        throw error;
      }
      warn(`cache ${cacheRef.name}: not used (${messageOf(error)})`);
    }
    return new RegistryCacheSource(
      cacheRef,
      repo,
      options.client === undefined,
      read,
      options.onWarning,
      warnings,
    );
  }

  /** Keys this cache holds. */
  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /**
   * The entry for `key`, with its layer blob in `blobs` (downloaded and verified, skipped when
   * already there), or undefined: not in this cache, or its layer could not be had (a warning;
   * the entry is then forgotten for the rest of the build).
   */
  get(key: Digest, blobs: BlobStore, signal?: AbortSignal): Promise<CacheEntry | undefined> {
    return hitWithLayer(this.entries, key, {
      cacheName: this.name,
      blobs,
      signal,
      copyLayer: (layer, what) => this.copyLayer(layer, what, blobs, signal),
      warn: (line) => {
        this.warnings.push(line);
        this.onWarning?.(line);
      },
    });
  }

  async close(): Promise<void> {
    if (this.ownClient) await this.repo.client.close();
  }
}

export interface ExportOptions {
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
  /** Repositories of the same registry to mount layers from (besides those this process saw them in). */
  readonly mountFrom?: readonly string[];
  readonly client?: RegistryClient;
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
  /** Distinct layers this build's entries name (each made sure of in the cache repository). */
  readonly layers: number;
  /** Of those, how many were uploaded, mounted from another repository, or already there. */
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
 * `--cache-to registry:REF`: collects the entries of every filesystem step of the build (hits
 * and misses), then after a successful build puts them in the registry: each layer confirmed in
 * the cache repository (HEAD, else mounted, else uploaded; once each), then one manifest whose
 * config merges these entries with those already under the tag, most recent first, capped.
 */
export class RegistryCacheExporter {
  private readonly pending = new Map<string, CacheEntry & { readonly record?: StepRecord }>();
  private readonly mounts = new Map<string, MountSnapshot>();

  constructor(readonly ref: CacheRef) {
    if (ref.tag === undefined) {
      throw new StratumError('USAGE', `cache ${ref.name}: --cache-to needs a tag, not a digest`);
    }
  }

  static parse(text: string): RegistryCacheExporter {
    return new RegistryCacheExporter(parseCacheRef(text));
  }

  get name(): string {
    return this.ref.name;
  }

  /** Records a step's entry (the latest for a key wins), with its key's components when known. */
  add(entry: CacheEntry, record?: StepRecord): void {
    this.pending.delete(entry.key);
    this.pending.set(entry.key, record === undefined ? entry : { ...entry, record });
  }

  /** A cache mount's contents, as this build left them (only with `mounts=true`). */
  addMount(mount: MountSnapshot): void {
    if (this.ref.mounts) this.mounts.set(mountIdentity(mount), mount);
  }

  get count(): number {
    return this.pending.size;
  }

  async flush(blobs: BlobStore, options: ExportOptions = {}): Promise<ExportResult> {
    const ref = this.ref;
    const tag = ref.tag ?? DEFAULT_CACHE_TAG;
    const client =
      options.client ?? new RegistryClient({ insecureRegistries: options.insecureRegistries ?? [] });
    const signalOption = options.signal ? { signal: options.signal } : {};
    const warn = (message: string): void => options.onWarning?.(message);
    try {
      const repo = new RepositoryClient(client, ref.registry, ref.repository, ref.name, true);
      let older: StoredCacheEntry[] = [];
      let olderMounts: StoredMount[] = [];
      try {
        const read = await readCache(repo, ref, options.signal);
        if (read.foreign !== undefined) {
          throw new StratumError(
            'USAGE',
            `cache ${ref.name}: the tag holds a ${read.foreign}, not a stratum cache; refusing to overwrite it (choose another tag)`,
          );
        }
        older = read.entries;
        olderMounts = read.mounts;
      } catch (error) {
        // A cache whose config is unreadable is replaced; anything else (network, auth) fails.
        if (!isStratumError(error) || (error.code !== 'INVALID_IMAGE' && error.code !== 'DIGEST_MISMATCH'))
          throw error;
        warn(`cache ${ref.name}: existing cache unreadable, replaced (${messageOf(error)})`);
      }

      // Newest first: the last steps of this build lead, so capping drops the oldest.
      const used = new Date().toISOString();
      const fresh = [...this.pending.values()].reverse().map((entry) => ({ ...entry, used }));
      const layers = uniqueLayers(fresh);
      const counts = { uploaded: 0, mounted: 0, existed: 0 };
      const missing = new Set<Digest>();
      await forEachLimited(layers, options.concurrency ?? 4, async (layer) => {
        const how = await this.ensureBlob(repo, blobs, layer, options.mountFrom ?? [], signalOption);
        if (how === 'missing') missing.add(layer.digest);
        else counts[how]++;
      });
      const usable = fresh.filter(
        (entry) => entry.layer === null || !missing.has(entry.layer.descriptor.digest),
      );
      if (missing.size > 0) {
        warn(
          `cache ${ref.name}: ${missing.size} layer(s) are neither in the local blob store nor in the registry; their entries are not exported`,
        );
      }

      // Cache mounts: this build's first, then those already under the tag, bounded by
      // mounts-max-size (the newest win). A blob the repository holds is not sent again.
      const freshMounts = [...this.mounts.values()].map((mount) => ({ ...mount, used }));
      const bounded = boundMounts(freshMounts, olderMounts, ref.mountsMaxSize);
      warnLeftMounts(ref.name, bounded.left, freshMounts, ref.mountsMaxSize, warn);
      const freshIds = new Set(freshMounts.map(mountIdentity));
      let mounts: StoredMount[] = [];
      let mountBlobsSent = 0;
      for (const mount of bounded.kept) {
        // Older mounts' blobs are the tag's own; a registry that lost one refuses the manifest (below).
        if (!freshIds.has(mountIdentity(mount))) {
          mounts.push(mount);
          continue;
        }
        let how = await this.ensureBlob(repo, blobs, mount.layer.descriptor, [], signalOption);
        if (how === 'missing' && (await options.fetchMount?.(mount)) === true)
          how = await this.ensureBlob(repo, blobs, mount.layer.descriptor, [], signalOption);
        if (how === 'missing') {
          warn(`cache ${ref.name}: cache mount ${describeMount(mount)}: its blob is gone; not exported`);
          continue;
        }
        if (how !== 'existed') mountBlobsSent++;
        mounts.push(mount);
      }

      const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
      const put = async (entries: StoredCacheEntry[]): Promise<Digest> => {
        const bytes = encodeCacheConfig(entries, mounts);
        const descriptor: Descriptor = {
          mediaType: CACHE_CONFIG_MEDIA_TYPE,
          digest: sha256Digest(bytes),
          size: bytes.length,
        };
        if ((await repo.blobExists(descriptor.digest, signalOption)) === undefined) {
          await repo.uploadBlob(() => Readable.from([bytes]), descriptor.digest, bytes.length, signalOption);
        }
        return repo.putManifest(
          tag,
          cacheManifest(descriptor, entries, used, mounts),
          MediaType.ociManifest,
          signalOption,
        );
      };
      let entries = mergeEntries(usable, older, max);
      let digest: Digest;
      try {
        digest = await put(entries);
      } catch (error) {
        // An older entry's layer is gone from the repository (deleted by hand, or a registry
        // that lost it): the registry refuses the manifest. Keep this build's entries only.
        if (!isStratumError(error) || !/BLOB_UNKNOWN/.test(error.message) || older.length === 0) throw error;
        warn(
          `cache ${ref.name}: older entries name layers the registry lost; kept only this build's entries`,
        );
        entries = mergeEntries(usable, [], max);
        mounts = mounts.filter((mount) => freshIds.has(mountIdentity(mount)));
        digest = await put(entries);
      }
      return {
        layers: layers.length,
        ...counts,
        entries: entries.length,
        mounts: mounts.length,
        mountBlobsSent,
        digest,
      };
    } finally {
      if (options.client === undefined) await client.close();
    }
  }

  /** Makes sure the cache repository holds a layer: HEAD, then mount, then upload from `blobs`. */
  private async ensureBlob(
    repo: RepositoryClient,
    blobs: BlobStore,
    layer: Descriptor,
    mountFrom: readonly string[],
    signalOption: { signal?: AbortSignal },
  ): Promise<'existed' | 'mounted' | 'uploaded' | 'missing'> {
    if ((await repo.blobExists(layer.digest, signalOption)) !== undefined) return 'existed';
    const candidates = [...new Set([...mountFrom, ...repo.knownBlobLocations(layer.digest)])].filter(
      (candidate) => candidate !== repo.repository,
    );
    for (const from of candidates) {
      try {
        if (await repo.mountBlob(layer.digest, from, signalOption)) return 'mounted';
      } catch (error) {
        // A mount source we may not read (403) or that is gone: try the next, then upload.
        if (!isStratumError(error) || (error.code !== 'AUTH' && error.code !== 'NOT_FOUND')) throw error;
      }
    }
    if ((await blobs.size(layer.digest)) !== layer.size) return 'missing';
    await repo.uploadBlob(
      () => blobs.read(layer.digest, { verify: true, size: layer.size }),
      layer.digest,
      layer.size,
      signalOption,
    );
    return 'uploaded';
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

export {
  CACHE_ARTIFACT_TYPE,
  CACHE_CONFIG_MEDIA_TYPE,
  DEFAULT_MAX_ENTRIES,
  type StoredCacheEntry,
} from './registry-format.js';
