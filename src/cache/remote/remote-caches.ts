import { messageOf, wrap } from '../../errors.js';
import type { BlobStore } from '../../oci/blob-store.js';
import type { Digest } from '../../oci/types.js';
import { RegistryClient } from '../../registry/client.js';
import type { RegistryContext } from '../../registry/context.js';
import type { CacheMountIdentity, MountSnapshot } from '../mount-export.js';
import type { CacheHit, ImportedMount, ImportedStep, RemoteCache } from '../source.js';
import { closestRecord, type StepRecord } from '../step-record.js';
import type { CacheEntry, LayerCache } from '../store.js';
import { parseCacheSpec, type CacheRef, type LocalCacheRef } from './cache-ref.js';
import { CacheExporter, type ExportResult } from './export.js';
import { ImportedCache } from './import.js';
import { LocalCacheTransport } from './local.js';
import { RegistryCacheTransport } from './registry.js';
import type { CacheTransport } from './transport.js';

/**
 * Every `--cache-from` and `--cache-to` of one build behind one object (the executor's
 * RemoteCache), so the engine needs three calls: lookup() after a local miss, record() after
 * every filesystem step, export() after the build succeeded (and after the push, so the pushed
 * layers are mounted).
 */
export interface RemoteCachesOptions {
  readonly cacheFrom?: readonly string[];
  readonly cacheTo?: readonly string[];
  readonly insecureRegistries?: readonly string[];
  /** Shared with the build's other registry clients (FROM, --push), so exports mount their blobs. */
  readonly registryContext?: RegistryContext;
  readonly signal?: AbortSignal;
  /** Warnings (unreachable cache, unusable layer, failed export with ignore-error=true). */
  readonly onWarning?: (message: string) => void;
}

export interface CacheExportSummary extends ExportResult {
  /** `registry:host/repo:tag` or `local:DIR`. */
  readonly name: string;
}

export class RemoteCaches implements RemoteCache {
  private constructor(
    private readonly client: RegistryClient,
    private readonly sources: readonly ImportedCache[],
    private readonly exporters: readonly CacheExporter[],
    private readonly options: RemoteCachesOptions,
  ) {}

  /**
   * Parses every reference (a bad one is a USAGE error, before any network) and reads each
   * `--cache-from` once, in parallel. Never fails for an unreachable cache: that is a warning.
   */
  static async open(options: RemoteCachesOptions): Promise<RemoteCaches> {
    const fromRefs = (options.cacheFrom ?? []).map((text) => parseCacheSpec(text, 'from'));
    const toRefs = (options.cacheTo ?? []).map((text) => parseCacheSpec(text, 'to'));
    const client = new RegistryClient({
      insecureRegistries: options.insecureRegistries ?? [],
      ...(options.registryContext ? { context: options.registryContext } : {}),
    });
    try {
      const exporters = toRefs.map((ref) => new CacheExporter(cacheTransport(ref, client, 'to'), ref));
      for (const exporter of exporters) await exporter.check();
      const sources = await Promise.all(
        fromRefs.map((ref) =>
          ImportedCache.open(cacheTransport(ref, client, 'from'), {
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.onWarning ? { onWarning: options.onWarning } : {}),
          }),
        ),
      );
      return new RemoteCaches(client, sources, exporters, options);
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** Whether there is anything to do (no flags: the engine can skip every call). */
  get active(): boolean {
    return this.sources.length > 0 || this.exporters.length > 0;
  }

  /**
   * After a local miss: the first `--cache-from` holding the key, its layer now in the local
   * cache's blob store and the entry saved locally (so the next build hits without the network).
   */
  async lookup(key: Digest, local: LayerCache, signal?: AbortSignal): Promise<CacheHit | undefined> {
    for (const source of this.sources) {
      const entry = await source.get(key, local.blobs, signal);
      if (entry === undefined) continue;
      await local.put(entry);
      return { entry, source: source.name };
    }
    return undefined;
  }

  /** After every filesystem step, hit (local or shared) or miss, with its key's components. */
  record(entry: CacheEntry, record?: StepRecord): void {
    for (const exporter of this.exporters) exporter.add(entry, record);
  }

  /**
   * For a step that missed: the entry of the `--cache-from` caches closest to it (the same
   * parent, else the same step of the same Dockerfile), to say what differs. Entries exported
   * without their key's components (by an older stratum) are not candidates.
   */
  closest(query: StepRecord): ImportedStep | undefined {
    this.importedSteps ??= this.sources.flatMap((source) =>
      [...source.stored()].flatMap((entry) =>
        entry.record === undefined ? [] : [{ source: source.name, record: entry.record, used: entry.used }],
      ),
    );
    return closestRecord(this.importedSteps, query);
  }

  /** Every imported entry that carries its key's components, gathered at the first miss. */
  private importedSteps: ImportedStep[] | undefined;

  hasMount(mount: CacheMountIdentity): boolean {
    return this.sources.some((source) => source.hasMount(mount));
  }

  /** What the first `--cache-from` holding the mount's contents holds, nothing fetched. */
  importedMount(mount: CacheMountIdentity): ImportedMount | undefined {
    for (const source of this.sources) {
      const stored = source.peekMount(mount);
      if (stored !== undefined) return { ...stored, source: source.name };
    }
    return undefined;
  }

  /** The first `--cache-from` holding the mount's contents, its blob fetched into the local store. */
  fetchMount(
    mount: CacheMountIdentity,
    local: LayerCache,
    signal?: AbortSignal,
  ): Promise<ImportedMount | undefined> {
    return this.fetchMountInto(mount, local.blobs, signal);
  }

  private async fetchMountInto(
    mount: CacheMountIdentity,
    blobs: BlobStore,
    signal?: AbortSignal,
  ): Promise<ImportedMount | undefined> {
    for (const source of this.sources) {
      if (!source.hasMount(mount)) continue;
      const stored = await source.getMount(mount, blobs, signal);
      if (stored !== undefined) return { ...stored, source: source.name };
    }
    return undefined;
  }

  /** Whether a `--cache-to` said `mounts=true`. */
  get exportsMounts(): boolean {
    return this.exporters.some((exporter) => exporter.attributes.mounts);
  }

  recordMount(mount: MountSnapshot): void {
    for (const exporter of this.exporters) exporter.addMount(mount);
  }

  /**
   * After the build (and its push) succeeded: each `--cache-to`, one after the other. A failure
   * is thrown (exit 1), unless that reference said `ignore-error=true`: then it is a warning.
   */
  async export(
    blobs: BlobStore,
    options: { readonly mountFrom?: readonly string[]; readonly signal?: AbortSignal } = {},
  ): Promise<CacheExportSummary[]> {
    const results: CacheExportSummary[] = [];
    const signal = options.signal ?? this.options.signal;
    for (const exporter of this.exporters) {
      try {
        const result = await exporter.flush(blobs, {
          // A mount carried over from an import (never restored here) is fetched only if the
          // destination lacks its blob.
          fetchMount: async (mount) => (await this.fetchMountInto(mount, blobs, signal)) !== undefined,
          ...(options.mountFrom ? { mountFrom: options.mountFrom } : {}),
          ...(signal ? { signal } : {}),
          ...(this.options.onWarning ? { onWarning: this.options.onWarning } : {}),
        });
        results.push({ ...result, name: exporter.name });
      } catch (error) {
        if (signal?.aborted === true || !exporter.attributes.ignoreError) {
          throw wrap(error, `cache ${exporter.name}`);
        }
        this.options.onWarning?.(`cache ${exporter.name}: not exported (${messageOf(error)})`);
      }
    }
    return results;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export interface OpenCacheOptions {
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
  readonly onWarning?: (message: string) => void;
}

/**
 * One cache read as `--cache-from` reads it (`registry:REF`, `type=registry,ref=REF` or
 * `type=local,src=DIR`), with a registry client of its own that close() closes.
 */
export function openImportedCache(spec: string, options: OpenCacheOptions = {}): Promise<ImportedCache> {
  const ref = parseCacheSpec(spec, 'from');
  const transport =
    'dir' in ref
      ? new LocalCacheTransport(ref)
      : new RegistryCacheTransport(
          ref,
          new RegistryClient({ insecureRegistries: options.insecureRegistries ?? [] }),
          { ownsClient: true },
        );
  return ImportedCache.open(transport, {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
}

/** The transport a reference names: a layout directory, else a registry tag over `client` (not closed by it). */
export function cacheTransport(
  ref: CacheRef | LocalCacheRef,
  client: RegistryClient,
  direction: 'from' | 'to',
): CacheTransport {
  if ('dir' in ref) return new LocalCacheTransport(ref);
  return new RegistryCacheTransport(ref, client, { forPush: direction === 'to' });
}
