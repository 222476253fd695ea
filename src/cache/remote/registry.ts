import { Readable } from 'node:stream';
import { StratumError, isStratumError } from '../../errors.js';
import type { BlobStore } from '../../oci/blob-store.js';
import { MediaType, type Descriptor, type Digest } from '../../oci/types.js';
import type { RegistryClient } from '../../registry/client.js';
import { RepositoryClient } from '../../registry/repository.js';
import { DEFAULT_CACHE_TAG, type CacheRef } from './cache-ref.js';
import type { CacheTransport, ManifestBytes, PutBlobOptions, PutOutcome } from './transport.js';

/**
 * The cache in a registry (`registry:REF`, `type=registry,ref=REF`): the artifact under a tag,
 * its layers ordinary blobs of the repository, so a fleet of CI machines shares its cache
 * through the registry it already pushes to. A layer the build pushed or pulled elsewhere in the
 * same registry is mounted rather than uploaded.
 */
export class RegistryCacheTransport implements CacheTransport {
  /** A HEAD per blob of up to 2000 entries costs more than the rare lost blob. */
  readonly cheapBlobChecks = false;
  private readonly repo: RepositoryClient;

  constructor(
    readonly ref: CacheRef,
    client: RegistryClient,
    private readonly options: {
      /** For `--cache-to`: push access from the first request, and a tag to write to. */
      readonly forPush?: boolean;
      /** Closed by close(): a client made for this cache alone. */
      readonly ownsClient?: boolean;
    } = {},
  ) {
    if (options.forPush === true && ref.tag === undefined) {
      throw new StratumError('USAGE', `cache ${ref.name}: --cache-to needs a tag, not a digest`);
    }
    this.repo = new RepositoryClient(client, ref.registry, ref.repository, ref.name, options.forPush);
  }

  get name(): string {
    return this.ref.name;
  }

  /** A missing tag or repository (404: MANIFEST_UNKNOWN, NAME_UNKNOWN) is no cache yet. */
  async readManifest(signal?: AbortSignal): Promise<ManifestBytes | undefined> {
    try {
      // Every manifest type is accepted, so that an image under the tag (Docker's types
      // included) is seen for what it is, rather than a registry's 404 read as "no cache yet".
      const manifest = await this.repo.getManifest(this.ref.digest ?? this.ref.tag ?? DEFAULT_CACHE_TAG, {
        ...(signal ? { signal } : {}),
      });
      return { bytes: manifest.bytes, mediaType: manifest.mediaType };
    } catch (error) {
      if (isStratumError(error) && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  readBlob(descriptor: Descriptor, signal?: AbortSignal): Readable {
    return this.repo.fetchBlob(descriptor.digest, { size: descriptor.size, ...(signal ? { signal } : {}) });
  }

  async hasBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean> {
    return (await this.repo.blobExists(descriptor.digest, signal ? { signal } : {})) !== undefined;
  }

  /** Mounted from a repository known to hold it (or named by `mountFrom`), else uploaded. */
  async putBlob(
    descriptor: Descriptor,
    from: BlobStore | Buffer,
    options: PutBlobOptions = {},
  ): Promise<PutOutcome> {
    const signalOption = options.signal ? { signal: options.signal } : {};
    const { digest, size } = descriptor;
    if (Buffer.isBuffer(from)) {
      await this.repo.uploadBlob(() => Readable.from([from]), digest, size, signalOption);
      return 'uploaded';
    }
    const candidates = [...new Set([...(options.mountFrom ?? []), ...this.repo.knownBlobLocations(digest)])];
    for (const source of candidates.filter((candidate) => candidate !== this.repo.repository)) {
      try {
        if (await this.repo.mountBlob(digest, source, signalOption)) return 'mounted';
      } catch (error) {
        // A mount source we may not read (403) or that is gone: try the next, then upload.
        if (!isStratumError(error) || (error.code !== 'AUTH' && error.code !== 'NOT_FOUND')) throw error;
      }
    }
    if ((await from.size(digest)) !== size) return 'missing';
    await this.repo.uploadBlob(() => from.read(digest, { verify: true, size }), digest, size, signalOption);
    return 'uploaded';
  }

  putManifest(bytes: Buffer, signal?: AbortSignal): Promise<Digest> {
    const tag = this.ref.tag ?? DEFAULT_CACHE_TAG;
    return this.repo.putManifest(tag, bytes, MediaType.ociManifest, signal ? { signal } : {});
  }

  async close(): Promise<void> {
    if (this.options.ownsClient === true) await this.repo.client.close();
  }
}
