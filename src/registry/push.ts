import { StratumError } from '../errors.js';
import type { ImageIndexSource, ImageSource } from '../oci/image.js';
import { MediaType, type Descriptor, type Digest } from '../oci/types.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { forEachLimited } from '../util/limit.js';
import { parseRegistryReference, withDigest, withTag, type RegistryReference } from './reference.js';
import { RepositoryClient, referenceLabel } from './repository.js';

export interface PushOptions extends RegistryClientOptions {
  /** More tags for the same manifest, in the same repository. */
  readonly tags?: readonly string[];
  /** Upload in PATCH chunks of this many bytes; default one streamed PATCH per blob. */
  readonly chunkSize?: number;
  /** Repositories of the same registry that may hold the blobs (tried as mount sources). */
  readonly mountFrom?: readonly string[];
  /** Blobs uploaded at once (default 4: measured in bench/registry.js against 3). */
  readonly concurrency?: number;
  readonly onProgress?: (event: PushProgress) => void;
  readonly client?: RegistryClient;
  readonly signal?: AbortSignal;
}

export type PushProgress =
  | { readonly kind: 'blob-start'; readonly digest: Digest; readonly size: number }
  | { readonly kind: 'blob-bytes'; readonly digest: Digest; readonly size: number; readonly sent: number }
  | {
      readonly kind: 'blob-done';
      readonly digest: Digest;
      readonly size: number;
      readonly how: 'existed' | 'mounted' | 'uploaded';
      readonly from?: string;
    }
  | { readonly kind: 'manifest'; readonly reference: string; readonly digest: Digest };

export interface PushResult {
  readonly digest: Digest;
  readonly mediaType: string;
  /** Every reference the manifest was put under: `host/repo:tag`. */
  readonly references: readonly string[];
  readonly blobs: { readonly existed: number; readonly mounted: number; readonly uploaded: number };
}

/**
 * Pushes an image from any ImageSource. Each blob is checked with HEAD, mounted from a repository
 * known to hold it, or streamed up; the manifest is put only after every blob is confirmed, so a
 * failed push leaves no tag pointing at missing blobs.
 */
export async function pushImage(
  source: ImageSource,
  reference: string | RegistryReference,
  options: PushOptions = {},
): Promise<PushResult> {
  return withPush(reference, options, source.manifest.digest, "the image's manifest", async (push) => {
    const { ref, label, client, repo, signalOption } = push;
    const blobs = uniqueBlobs([source.manifest.value.config, ...source.manifest.value.layers]);
    const counts = { existed: 0, mounted: 0, uploaded: 0 };
    await forEachLimited(blobs, options.concurrency ?? 4, async (blob) => {
      options.onProgress?.({ kind: 'blob-start', digest: blob.digest, size: blob.size });
      const present = await repo.blobExists(blob.digest, signalOption);
      if (present !== undefined) {
        counts.existed++;
        options.onProgress?.({ kind: 'blob-done', digest: blob.digest, size: blob.size, how: 'existed' });
        return;
      }
      const candidates = [
        ...new Set([...(options.mountFrom ?? []), ...repo.knownBlobLocations(blob.digest)]),
      ].filter((candidate) => candidate !== ref.repository);
      for (const from of candidates) {
        if (await repo.mountBlob(blob.digest, from, signalOption)) {
          counts.mounted++;
          options.onProgress?.({
            kind: 'blob-done',
            digest: blob.digest,
            size: blob.size,
            how: 'mounted',
            from,
          });
          return;
        }
      }
      await repo.uploadBlob((signal) => source.openBlob(blob, signal), blob.digest, blob.size, {
        ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
        ...signalOption,
        onProgress: (sent) =>
          options.onProgress?.({ kind: 'blob-bytes', digest: blob.digest, size: blob.size, sent }),
      });
      counts.uploaded++;
      options.onProgress?.({ kind: 'blob-done', digest: blob.digest, size: blob.size, how: 'uploaded' });
    });

    const mediaType = source.manifest.value.mediaType ?? source.descriptor.mediaType;
    if (mediaType !== MediaType.ociManifest && mediaType !== MediaType.dockerManifest) {
      throw new StratumError('UNSUPPORTED', `${label}: cannot push a manifest of media type ${mediaType}`);
    }
    const put = await putManifest(push, source.manifest, mediaType, options);
    for (const blob of blobs) client.rememberBlob(ref.registry, ref.repository, blob.digest);
    return { ...put, mediaType, blobs: counts };
  });
}

interface PushContext {
  readonly ref: RegistryReference;
  readonly label: string;
  readonly client: RegistryClient;
  readonly repo: RepositoryClient;
  readonly signalOption: { readonly signal?: AbortSignal };
}

/**
 * What pushImage and pushIndex share before and after their own work: the reference parsed, a
 * digest it names checked against what is pushed, a client (closed afterwards when the push
 * made it) and the repository.
 */
async function withPush<T>(
  reference: string | RegistryReference,
  options: PushOptions,
  pushedDigest: Digest,
  what: string,
  work: (push: PushContext) => Promise<T>,
): Promise<T> {
  const ref = typeof reference === 'string' ? parseRegistryReference(reference) : reference;
  const label = referenceLabel(ref);
  const ownClient = options.client === undefined;
  const client = options.client ?? new RegistryClient(options);
  try {
    if (ref.digest !== undefined && ref.digest !== pushedDigest) {
      throw new StratumError('USAGE', `${label}: ${what} is ${pushedDigest}, not the digest named`);
    }
    const repo = new RepositoryClient(client, ref.registry, ref.repository, label, true);
    const signalOption = options.signal ? { signal: options.signal } : {};
    return await work({ ref, label, client, repo, signalOption });
  } finally {
    if (ownClient) await client.close();
  }
}

/** Puts a manifest or index under every tag the push names (or its digest), last. */
async function putManifest(
  push: PushContext,
  document: { readonly raw: Buffer; readonly digest: Digest },
  mediaType: string,
  options: PushOptions,
): Promise<{ readonly digest: Digest; readonly references: string[] }> {
  const { ref, repo, signalOption } = push;
  const references: string[] = [];
  let digest = document.digest;
  for (const target of manifestTargets(ref, options.tags ?? [])) {
    digest = await repo.putManifest(target, document.raw, mediaType, signalOption);
    const shown = target.includes(':')
      ? `${ref.registry}/${ref.repository}@${target}`
      : `${ref.registry}/${ref.repository}:${target}`;
    references.push(shown);
    options.onProgress?.({ kind: 'manifest', reference: shown, digest });
  }
  return { digest, references };
}

/** Tags to put the manifest under; a reference with only a digest is put by digest. */
function manifestTargets(ref: RegistryReference, extraTags: readonly string[]): string[] {
  const tags = [
    ...(ref.tag !== undefined ? [ref.tag] : []),
    ...extraTags.map((tag) => withTag(ref, tag).tag!),
  ];
  if (tags.length === 0 && ref.digest !== undefined) return [ref.digest];
  return [...new Set(tags)];
}

function uniqueBlobs(descriptors: readonly Descriptor[]): Descriptor[] {
  const seen = new Set<string>();
  return descriptors.filter((descriptor) => {
    if (seen.has(descriptor.digest)) return false;
    seen.add(descriptor.digest);
    return true;
  });
}

/**
 * Pushes a multi-platform image: each platform's image by digest (blobs first, as pushImage
 * does), then the index under the reference's tag(s). The index is put last, so a failed push
 * leaves no tag naming a manifest the registry lacks.
 */
export async function pushIndex(
  source: ImageIndexSource,
  reference: string | RegistryReference,
  options: PushOptions = {},
): Promise<PushResult> {
  return withPush(reference, options, source.index.digest, 'the image index', async (push) => {
    const { ref, client } = push;
    const counts = { existed: 0, mounted: 0, uploaded: 0 };
    for (const image of source.images) {
      const pushed = await pushImage(image, withDigest(ref, image.manifest.digest), {
        ...options,
        tags: [],
        client,
      });
      counts.existed += pushed.blobs.existed;
      counts.mounted += pushed.blobs.mounted;
      counts.uploaded += pushed.blobs.uploaded;
    }
    const put = await putManifest(push, source.index, MediaType.ociIndex, options);
    return { ...put, mediaType: MediaType.ociIndex, blobs: counts };
  });
}
