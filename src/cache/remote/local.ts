import type { Readable } from 'node:stream';
import { StratumError } from '../../errors.js';
import { BlobStore } from '../../oci/blob-store.js';
import { sha256Digest } from '../../oci/digest.js';
import { MediaType, type Descriptor, type Digest } from '../../oci/types.js';
import { directoryAccess } from '../../transport/files.js';
import { readLayoutIndex, refName } from '../../transport/layout/reader.js';
import {
  directoryState,
  prepareLayout,
  updateLayoutIndex,
  updatedEntries,
} from '../../transport/layout/writer.js';
import { DEFAULT_CACHE_TAG, type LocalCacheRef } from './cache-ref.js';
import type { CacheTransport, ManifestBytes, PutOutcome } from './transport.js';

/**
 * The cache in a directory (buildx's `--cache-to type=local,dest=DIR` and `--cache-from
 * type=local,src=DIR`): the artifact in an OCI image layout, tagged `stratum-cache` in its
 * index.json. A CI system that saves and restores a directory (actions/cache and the like)
 * shares its cache this way. Blobs are hard-linked from the local cache's store when the
 * filesystem allows, else copied; index.json is replaced atomically under the layout's lock, so
 * readers never see half a cache. The directory is the user's to edit, so every blob read from
 * it is verified, and a missing one is a stat away (cheap checks).
 */
export class LocalCacheTransport implements CacheTransport {
  readonly cheapBlobChecks = true;
  private readonly blobs: BlobStore;
  private prepared: Promise<unknown> | undefined;

  constructor(readonly ref: LocalCacheRef) {
    this.blobs = new BlobStore(ref.dir);
  }

  get name(): string {
    return this.ref.name;
  }

  /** A missing directory or tag is NOT_FOUND: a warning on import, an empty cache on export. */
  async readManifest(): Promise<ManifestBytes> {
    const index = await readLayoutIndex(directoryAccess(this.ref.dir), this.name);
    const tagged = index.value.manifests.find((entry) => refName(entry) === DEFAULT_CACHE_TAG);
    if (tagged === undefined) {
      throw new StratumError('NOT_FOUND', `${this.name}: no ${DEFAULT_CACHE_TAG} in the layout's index.json`);
    }
    const bytes = await this.blobs.readBytes(tagged.digest, { verify: true, size: tagged.size });
    return { bytes, mediaType: tagged.mediaType };
  }

  readBlob(descriptor: Descriptor): Readable {
    return this.blobs.read(descriptor.digest, { verify: true, size: descriptor.size });
  }

  async hasBlob(descriptor: Descriptor): Promise<boolean> {
    return (await this.blobs.size(descriptor.digest)) === descriptor.size;
  }

  async putBlob(descriptor: Descriptor, from: BlobStore | Buffer): Promise<PutOutcome> {
    await this.prepare();
    if (Buffer.isBuffer(from)) {
      await this.blobs.putBytes(from, descriptor.digest);
      return 'uploaded';
    }
    if ((await from.size(descriptor.digest)) !== descriptor.size) return 'missing';
    if (await this.blobs.linkFrom(from.path(descriptor.digest), descriptor.digest)) return 'mounted';
    const bytes = from.read(descriptor.digest, { verify: true, size: descriptor.size });
    await this.blobs.putStream(bytes, descriptor.digest);
    return 'uploaded';
  }

  async putManifest(bytes: Buffer, signal?: AbortSignal): Promise<Digest> {
    await this.prepare();
    const digest = sha256Digest(bytes);
    await this.blobs.putBytes(bytes, digest);
    const descriptor: Descriptor = { mediaType: MediaType.ociManifest, digest, size: bytes.length };
    await updateLayoutIndex(
      this.ref.dir,
      (existing) => updatedEntries(existing, descriptor, [DEFAULT_CACHE_TAG]),
      signal,
    );
    return digest;
  }

  async checkWritable(): Promise<void> {
    if ((await directoryState(this.ref.dir)) === 'other') {
      throw new StratumError(
        'USAGE',
        `cache ${this.name}: exists and is not an OCI image layout (no oci-layout file); refusing to write into it`,
      );
    }
  }

  /** Makes the directory a layout before the first write (refused when it is something else). */
  private prepare(): Promise<unknown> {
    return (this.prepared ??= prepareLayout(this.ref.dir));
  }
}
