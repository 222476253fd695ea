import { StratumError } from '../../errors.js';
import { isDigest } from '../../oci/digest.js';
import type { LayerRef } from '../../oci/image.js';
import { MediaType, type Descriptor, type Digest, type ImageManifest } from '../../oci/types.js';
import { decodeMount, encodeMount, type StoredMount } from '../mount-export.js';
import { decodeStepRecord, exportedStepRecord, type StepRecord } from '../step-record.js';
import type { CacheEntry } from '../store.js';

/**
 * The cache artifact's bytes, wherever it is stored (transport.ts): one OCI image manifest per
 * cache tag, under a registry tag or an OCI layout directory's `index.json` tag alike.
 *
 *   manifest  mediaType    application/vnd.oci.image.manifest.v1+json
 *             artifactType application/vnd.stratum.cache.v1+json
 *             config       application/vnd.stratum.cache.config.v1+json (the entries, below)
 *             layers       every layer an entry names, once each
 *
 * Listing the layers in the manifest is what makes the registry keep them: its garbage
 * collector deletes blobs no manifest references. The config holds the entries, most recently
 * used first:
 *
 *   { "version": 1, "entries": [ { "key", "layer": { "descriptor", "diffId" } | null,
 *                                  "createdBy", "instruction", "created", "used",
 *                                  "record"? } ],
 *     "mounts"?: [ ... ] }
 *
 * The fields of an entry are the local LayerCache's (store.ts), plus `used`: when a build last
 * exported it, which decides what goes when the list is capped, and `record`: the step's key
 * components (step-record.ts), so that a miss on another machine can be explained. `mounts`
 * holds cache mount contents (mount-export.ts). Both are optional: a reader that knows neither
 * (an older stratum) ignores them, and still reads the entries.
 */
export const CACHE_ARTIFACT_TYPE = 'application/vnd.stratum.cache.v1+json';
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.stratum.cache.config.v1+json';
export const CACHE_FORMAT_VERSION = 1;
/** Entries kept under one tag; older ones drop off (their layers with them, at the next GC). */
export const DEFAULT_MAX_ENTRIES = 2000;
/** A config larger than this is not read (2000 entries take about 1 MiB). */
export const MAX_CONFIG_BYTES = 32 * 1024 * 1024;

export interface StoredCacheEntry extends CacheEntry {
  /** ISO time of the export that last carried this entry. */
  readonly used: string;
  /** What the step's key was made of, where the exporting build knew it. */
  readonly record?: StepRecord;
}

export interface CacheConfig {
  readonly version: typeof CACHE_FORMAT_VERSION;
  readonly entries: readonly StoredCacheEntry[];
  readonly mounts?: readonly StoredMount[];
}

/** What a cache config holds. */
export interface DecodedCache {
  readonly entries: StoredCacheEntry[];
  readonly mounts: StoredMount[];
}

export function encodeCacheConfig(
  entries: readonly StoredCacheEntry[],
  mounts: readonly StoredMount[] = [],
): Buffer {
  const config = {
    version: CACHE_FORMAT_VERSION,
    entries: entries.map((entry) => ({
      key: entry.key,
      layer:
        entry.layer === null
          ? null
          : { descriptor: plainDescriptor(entry.layer.descriptor), diffId: entry.layer.diffId },
      createdBy: entry.createdBy,
      instruction: entry.instruction,
      created: entry.created,
      used: entry.used,
      ...(entry.record === undefined ? {} : { record: exportedStepRecord(entry.record) }),
    })),
    ...(mounts.length === 0 ? {} : { mounts: mounts.map(encodeMount) }),
  };
  return Buffer.from(JSON.stringify(config));
}

/**
 * Reads a cache config. A document that is not one (bad JSON, another version) is an error;
 * single malformed entries are dropped, so one bad writer cannot spoil everyone's cache.
 */
export function decodeCacheConfig(bytes: Buffer, what: string): DecodedCache {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new StratumError('INVALID_IMAGE', `${what}: cache config is not JSON`);
  }
  if (!isRecord(parsed) || parsed['version'] !== CACHE_FORMAT_VERSION || !Array.isArray(parsed['entries'])) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${what}: not a stratum cache config of version ${CACHE_FORMAT_VERSION}`,
    );
  }
  const out: StoredCacheEntry[] = [];
  const seen = new Set<string>();
  for (const item of parsed['entries'] as unknown[]) {
    const entry = decodeEntry(item);
    if (entry === undefined || seen.has(entry.key)) continue;
    seen.add(entry.key);
    out.push(entry);
  }
  const mounts: StoredMount[] = [];
  if (Array.isArray(parsed['mounts'])) {
    for (const item of parsed['mounts'] as unknown[]) {
      const mount = decodeMount(item);
      if (mount !== undefined) mounts.push(mount);
    }
  }
  return { entries: out, mounts };
}

function decodeEntry(item: unknown): StoredCacheEntry | undefined {
  if (!isRecord(item)) return undefined;
  const { key, layer, createdBy, instruction, created, used, record } = item;
  if (typeof key !== 'string' || !isDigest(key)) return undefined;
  if (typeof createdBy !== 'string' || typeof instruction !== 'string') return undefined;
  if (typeof created !== 'string' || typeof used !== 'string') return undefined;
  let layerRef: LayerRef | null = null;
  if (layer !== null) {
    if (!isRecord(layer) || typeof layer['diffId'] !== 'string' || !isDigest(layer['diffId']))
      return undefined;
    const descriptor = decodeDescriptor(layer['descriptor']);
    if (descriptor === undefined) return undefined;
    layerRef = { descriptor, diffId: layer['diffId'] };
  }
  // A malformed record costs the explanation, not the entry.
  const decodedRecord = record === undefined ? undefined : decodeStepRecord(record);
  return {
    key,
    layer: layerRef,
    createdBy,
    instruction,
    created,
    used,
    ...(decodedRecord === undefined ? {} : { record: decodedRecord }),
  };
}

function decodeDescriptor(value: unknown): Descriptor | undefined {
  if (!isRecord(value)) return undefined;
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string' || mediaType === '') return undefined;
  if (typeof digest !== 'string' || !isDigest(digest)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  // Foreign layers (with urls) are never produced by a build; refusing them keeps downloads here.
  if (value['urls'] !== undefined) return undefined;
  return { mediaType, digest, size };
}

/** Only what identifies a blob: annotations or urls a local descriptor might carry stay local. */
function plainDescriptor(descriptor: Descriptor): Descriptor {
  return { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
}

/**
 * This build's entries first (most recent), then the older ones they do not replace, capped.
 * Later duplicates of a key are dropped, so the freshest wins.
 */
export function mergeEntries(
  fresh: readonly StoredCacheEntry[],
  older: readonly StoredCacheEntry[],
  max: number,
): StoredCacheEntry[] {
  const out: StoredCacheEntry[] = [];
  const seen = new Set<string>();
  const olderRecords = new Map(
    older.flatMap((entry) => (entry.record === undefined ? [] : [[entry.key, entry.record] as const])),
  );
  for (const entry of [...fresh, ...older]) {
    if (seen.has(entry.key)) continue;
    seen.add(entry.key);
    // A hit recorded without its inputs keeps those an earlier export knew.
    const record = entry.record ?? olderRecords.get(entry.key);
    out.push(record === undefined ? entry : { ...entry, record });
    if (out.length >= max) break;
  }
  return out;
}

/** Every layer the entries name, then every mount's blob, once each, in that order. */
export function referencedLayers(
  entries: readonly StoredCacheEntry[],
  mounts: readonly StoredMount[] = [],
): Descriptor[] {
  const seen = new Set<Digest>();
  const out: Descriptor[] = [];
  const layers = [
    ...entries.flatMap((entry) => (entry.layer === null ? [] : [entry.layer])),
    ...mounts.map((mount) => mount.layer),
  ];
  for (const layer of layers) {
    if (seen.has(layer.descriptor.digest)) continue;
    seen.add(layer.descriptor.digest);
    out.push(plainDescriptor(layer.descriptor));
  }
  return out;
}

export function cacheManifest(
  config: Descriptor,
  entries: readonly StoredCacheEntry[],
  created: string,
  mounts: readonly StoredMount[] = [],
): Buffer {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: CACHE_ARTIFACT_TYPE,
    config,
    layers: referencedLayers(entries, mounts),
    annotations: { 'org.opencontainers.image.created': created },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/**
 * Reads a manifest's bytes and says whether it is a stratum cache. Returns the config's
 * descriptor for a cache, undefined for anything else (an image someone tagged there).
 */
export function cacheConfigOf(bytes: Buffer): Descriptor | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(parsed) || !isRecord(parsed['config'])) return undefined;
  const config = decodeDescriptor(parsed['config']);
  if (config === undefined || config.mediaType !== CACHE_CONFIG_MEDIA_TYPE) return undefined;
  // artifactType is OCI 1.1; a registry or proxy that drops unknown fields still keeps the config.
  const artifactType = parsed['artifactType'];
  if (artifactType !== undefined && artifactType !== CACHE_ARTIFACT_TYPE) return undefined;
  return config;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
