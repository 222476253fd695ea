import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError, isStratumError, wrap } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { ImageSource } from '../oci/image.js';
import {
  MediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Raw,
} from '../oci/types.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { formatPlatform, hostPlatform, selectPlatform } from '../oci/platform.js';
import { manifestReference, parseRegistryReference, type RegistryReference } from './reference.js';
import { RepositoryClient, referenceLabel, type FetchedManifest } from './repository.js';
import { forEachLimited } from '../util/limit.js';

export interface PullOptions extends RegistryClientOptions {
  /** Platform to choose from an index; default the host's. */
  readonly platform?: Platform;
  /** Reuse a client (its tokens and connections); otherwise one is made and closed with the image. */
  readonly client?: RegistryClient;
  /** Layers downloaded at once (default 4: measured in bench/registry.js against 3). */
  readonly concurrency?: number;
  readonly onProgress?: (event: PullProgress) => void;
  readonly signal?: AbortSignal;
}

export type PullProgress =
  | { readonly kind: 'blob-present'; readonly digest: Digest; readonly size: number }
  /** Bytes of one blob received so far (a lazily opened image reports these as it is read). */
  | { readonly kind: 'blob-bytes'; readonly digest: Digest; readonly size: number; readonly received: number }
  /** A blob arrived whole; `seconds` from its request to its last byte, for a rate. */
  | {
      readonly kind: 'blob-fetched';
      readonly digest: Digest;
      readonly size: number;
      readonly seconds?: number;
    }
  | { readonly kind: 'manifest'; readonly digest: Digest; readonly mediaType: string };

const IMAGE_MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);

/** What a reference resolves to: the image manifest (through an index when there is one). */
export interface ResolvedImage {
  readonly reference: RegistryReference;
  readonly label: string;
  readonly descriptor: Descriptor;
  readonly manifest: Raw<ImageManifest>;
  /** The index the manifest was chosen from, when the reference named one. */
  readonly index?: Raw<ImageIndex>;
}

/** Array.isArray without narrowing a typed field to any[]: the JSON is checked, the type kept. */
function isList(value: unknown): boolean {
  return Array.isArray(value);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new StratumError('INVALID_IMAGE', `${what}: not valid JSON`);
  }
}

/** Resolves tag or digest → manifest, choosing from an index by platform. */
export async function resolveImage(
  repo: RepositoryClient,
  ref: RegistryReference,
  options: { readonly platform?: Platform; readonly signal?: AbortSignal } = {},
): Promise<ResolvedImage> {
  const label = referenceLabel(ref);
  const signalOption = options.signal ? { signal: options.signal } : {};
  let fetched: FetchedManifest = await repo.getManifest(manifestReference(ref), signalOption);
  let index: Raw<ImageIndex> | undefined;
  let descriptor: Descriptor = { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.size };
  if (INDEX_TYPES.has(fetched.mediaType)) {
    const value = parseJson(fetched.bytes, `${label}: index`) as ImageIndex;
    if (!isList(value.manifests))
      throw new StratumError('INVALID_IMAGE', `${label}: index has no manifests list`);
    index = { value, raw: fetched.bytes, digest: fetched.digest };
    const wanted = options.platform ?? hostPlatform();
    const chosen = selectPlatform(value.manifests, wanted);
    if (chosen === undefined) {
      const available = value.manifests.flatMap((entry) =>
        entry.platform ? [formatPlatform(entry.platform)] : [],
      );
      throw new StratumError(
        'NOT_FOUND',
        `${label}: no manifest for platform ${formatPlatform(wanted)} (available: ${available.join(', ') || 'none'})`,
      );
    }
    fetched = await repo.getManifest(chosen.digest, signalOption);
    if (fetched.size !== chosen.size) {
      throw new StratumError(
        'DIGEST_MISMATCH',
        `${label}: manifest ${chosen.digest} is ${fetched.size} bytes, index says ${chosen.size}`,
      );
    }
    descriptor = { ...chosen, mediaType: fetched.mediaType };
  }
  if (!IMAGE_MANIFEST_TYPES.has(fetched.mediaType)) {
    throw new StratumError(
      'UNSUPPORTED',
      `${label}: unsupported manifest media type ${fetched.mediaType} (stratum reads OCI and Docker schema 2 images)`,
    );
  }
  const manifest = parseJson(fetched.bytes, `${label}: manifest`) as ImageManifest;
  if (typeof (manifest.config as unknown) !== 'object' || !isList(manifest.layers)) {
    throw new StratumError('INVALID_IMAGE', `${label}: manifest lacks config or layers`);
  }
  if (!CONFIG_TYPES.has(manifest.config.mediaType)) {
    throw new StratumError(
      'UNSUPPORTED',
      `${label}: not a container image (config media type ${manifest.config.mediaType})`,
    );
  }
  // A registry keeps every blob its manifests name: a later push to a sibling repository can mount them.
  for (const blob of [manifest.config, ...manifest.layers])
    repo.client.rememberBlob(ref.registry, ref.repository, blob.digest);
  return {
    reference: ref,
    label,
    descriptor,
    manifest: { value: manifest, raw: fetched.bytes, digest: fetched.digest },
    ...(index !== undefined ? { index } : {}),
  };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function fetchConfig(
  repo: RepositoryClient,
  resolved: ResolvedImage,
  signal?: AbortSignal,
): Promise<Raw<ImageConfig>> {
  const descriptor = resolved.manifest.value.config;
  if (descriptor.size > 16 * 1024 * 1024) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${resolved.label}: config of ${descriptor.size} bytes is too large`,
    );
  }
  const raw = await readAll(
    repo.fetchBlob(descriptor.digest, { size: descriptor.size, ...(signal ? { signal } : {}) }),
  );
  const value = parseJson(raw, `${resolved.label}: config`) as ImageConfig;
  return { value, raw, digest: descriptor.digest };
}

function toRef(reference: string | RegistryReference): RegistryReference {
  return typeof reference === 'string' ? parseRegistryReference(reference) : reference;
}

/**
 * Opens a registry image lazily: the manifest and config are fetched now, each blob when it is
 * opened (verified against its digest as it streams).
 */
export async function openRegistryImage(
  reference: string | RegistryReference,
  options: PullOptions = {},
): Promise<ImageSource> {
  const ref = toRef(reference);
  const ownClient = options.client === undefined;
  const client = options.client ?? new RegistryClient(options);
  try {
    const repo = new RepositoryClient(client, ref.registry, ref.repository, referenceLabel(ref));
    const resolved = await resolveImage(repo, ref, options);
    const config = await fetchConfig(repo, resolved, options.signal);
    let closed = false;
    return {
      name: resolved.label,
      descriptor: resolved.descriptor,
      manifest: resolved.manifest,
      config,
      ...(resolved.index === undefined ? {} : { chosenFrom: platformsOfIndex(resolved.index) }),
      openBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<Readable> {
        const effective = signal ?? options.signal;
        const stream = repo.fetchBlob(descriptor.digest, {
          size: descriptor.size,
          ...(effective ? { signal: effective } : {}),
        });
        return Promise.resolve(
          options.onProgress === undefined ? stream : countingBytes(stream, descriptor, options.onProgress),
        );
      },
      async close(): Promise<void> {
        if (closed) return;
        closed = true;
        if (ownClient) await client.close();
      },
    };
  } catch (error) {
    if (ownClient) await client.close();
    throw error;
  }
}

/** Passes a blob's bytes through, reporting how many have arrived and, at the end, how fast. */
function countingBytes(
  stream: Readable,
  descriptor: Descriptor,
  onProgress: (event: PullProgress) => void,
): Readable {
  const started = Date.now();
  let received = 0;
  const { digest, size } = descriptor;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      onProgress({ kind: 'blob-bytes', digest, size, received });
      done(null, chunk);
    },
    flush(done) {
      onProgress({ kind: 'blob-fetched', digest, size, seconds: (Date.now() - started) / 1000 });
      done();
    },
  });
  // A failure of the download destroys the counter with the same error, so the reader sees it.
  pipeline(stream, counter).catch(() => undefined);
  return counter;
}

/**
 * Pulls an image into a BlobStore: manifest (and index), config and every layer, each verified,
 * layers in parallel (bounded), blobs already in the store skipped. Returns an ImageSource backed
 * by the store, so the image can be written anywhere afterwards.
 */
export async function pullImage(
  reference: string | RegistryReference,
  store: BlobStore,
  options: PullOptions = {},
): Promise<ImageSource> {
  const ref = toRef(reference);
  const ownClient = options.client === undefined;
  const client = options.client ?? new RegistryClient(options);
  try {
    const repo = new RepositoryClient(client, ref.registry, ref.repository, referenceLabel(ref));
    const resolved = await resolveImage(repo, ref, options);
    const signalOption = options.signal ? { signal: options.signal } : {};
    const blobs = dedupe([resolved.manifest.value.config, ...resolved.manifest.value.layers]);
    await forEachLimited(blobs, options.concurrency ?? 4, async (descriptor) => {
      if ((await store.size(descriptor.digest)) === descriptor.size) {
        options.onProgress?.({ kind: 'blob-present', digest: descriptor.digest, size: descriptor.size });
        return;
      }
      const started = Date.now();
      if (
        descriptor.urls !== undefined &&
        descriptor.urls.length > 0 &&
        descriptor.mediaType.includes('foreign')
      ) {
        throw new StratumError(
          'UNSUPPORTED',
          `${resolved.label}: foreign layer ${descriptor.digest} (non-distributable) is not pulled`,
        );
      }
      try {
        // The store hashes what it writes and refuses a mismatch; a second hash here would be waste.
        await store.putStream(
          repo.fetchBlob(descriptor.digest, { verify: false, ...signalOption }),
          descriptor.digest,
        );
      } catch (error) {
        // With verify off, a mismatch can only be the store's own check, which does not know
        // where the blob came from: name the image and the blob. (The download's own errors
        // already name them.)
        if (isStratumError(error) && error.code === 'DIGEST_MISMATCH')
          throw wrap(error, `${resolved.label}: blob ${descriptor.digest}`);
        throw error;
      }
      const stored = await store.size(descriptor.digest);
      if (stored !== descriptor.size) {
        throw new StratumError(
          'DIGEST_MISMATCH',
          `${resolved.label}: blob ${descriptor.digest} is ${stored ?? 0} bytes, manifest says ${descriptor.size}`,
        );
      }
      options.onProgress?.({
        kind: 'blob-fetched',
        digest: descriptor.digest,
        size: descriptor.size,
        seconds: (Date.now() - started) / 1000,
      });
    });
    await store.putBytes(resolved.manifest.raw, resolved.manifest.digest);
    if (resolved.index !== undefined) await store.putBytes(resolved.index.raw, resolved.index.digest);
    options.onProgress?.({
      kind: 'manifest',
      digest: resolved.manifest.digest,
      mediaType: resolved.descriptor.mediaType,
    });
    const configRaw = await store.readBytes(resolved.manifest.value.config.digest, {
      verify: true,
      size: resolved.manifest.value.config.size,
    });
    const config: Raw<ImageConfig> = {
      value: parseJson(configRaw, `${resolved.label}: config`) as ImageConfig,
      raw: configRaw,
      digest: resolved.manifest.value.config.digest,
    };
    return storeImageSource(store, resolved.label, resolved.descriptor, resolved.manifest, config);
  } finally {
    if (ownClient) await client.close();
  }
}

function dedupe(descriptors: readonly Descriptor[]): Descriptor[] {
  const seen = new Set<string>();
  return descriptors.filter((descriptor) => {
    if (seen.has(descriptor.digest)) return false;
    seen.add(descriptor.digest);
    return true;
  });
}

/** An ImageSource over a BlobStore that already holds every blob of the image. */
export function storeImageSource(
  store: BlobStore,
  name: string,
  descriptor: Descriptor,
  manifest: Raw<ImageManifest>,
  config: Raw<ImageConfig>,
): ImageSource {
  return {
    name,
    descriptor,
    manifest,
    config,
    openBlob(blob: Descriptor): Promise<Readable> {
      return Promise.resolve(store.read(blob.digest, { verify: true, size: blob.size }));
    },
    close(): Promise<void> {
      return Promise.resolve();
    },
  };
}

/** The index an image was chosen from, as ImageSource.chosenFrom tells it. */
function platformsOfIndex(index: Raw<ImageIndex>): NonNullable<ImageSource['chosenFrom']> {
  return {
    digest: index.digest,
    platforms: index.value.manifests.flatMap((entry) => (entry.platform ? [entry.platform] : [])),
  };
}
