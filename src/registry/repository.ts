import type { Readable } from 'node:stream';
import type { Digest } from '../oci/types.js';
import { fetchBlob } from './blob-download.js';
import { BlobUploader, type BlobBody, type UploadOptions } from './blob-upload.js';
import type { RegistryClient } from './client.js';
import { headerValue } from './http.js';
import { Manifests, type FetchedManifest } from './manifests.js';
import { formatReference, type RegistryReference } from './reference.js';
import type { RepositoryScope } from './repository-scope.js';

export { MANIFEST_ACCEPT, type FetchedManifest } from './manifests.js';
export type { BlobBody, UploadOptions } from './blob-upload.js';

/**
 * The distribution API for one repository: the generic primitives that pull, push and the shared
 * layer cache are built on. Manifests (manifests.ts), blob upload (blob-upload.ts) and blob
 * download (blob-download.ts) are their own modules; this is the one handle on them, plus the
 * blob HEAD and cross-repository mount. Every byte that comes back is checked against its digest.
 */
export class RepositoryClient implements RepositoryScope {
  /** `host/repository`, for messages. */
  readonly name: string;
  private readonly manifests: Manifests;
  private readonly uploader: BlobUploader;

  constructor(
    readonly client: RegistryClient,
    readonly registry: string,
    readonly repository: string,
    /** How errors name this repository (the reference the user typed). */
    readonly label: string = `docker://${registry}/${repository}`,
    /**
     * Ask for push access from the first request: a push's HEADs then share the token of its
     * uploads instead of fetching a pull-only one first (Docker does the same).
     */
    readonly forPush = false,
  ) {
    this.name = `${registry}/${repository}`;
    this.manifests = new Manifests(this);
    this.uploader = new BlobUploader(this);
  }

  pullScope(): string[] {
    return this.forPush ? this.pushScope() : [`repository:${this.repository}:pull`];
  }

  pushScope(): string[] {
    return [`repository:${this.repository}:pull,push`];
  }

  refLabel(reference: string): string {
    return reference.includes(':') && /^[a-z0-9]+:/.test(reference)
      ? `docker://${this.name}@${reference}`
      : `docker://${this.name}:${reference}`;
  }

  /** GET a manifest or index by tag or digest; the bytes are checked against the digest. */
  getManifest(
    reference: string,
    options: { readonly accept?: readonly string[]; readonly signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    return this.manifests.get(reference, options);
  }

  /** HEAD a manifest: its digest and media type, or undefined when the tag or digest is unknown. */
  headManifest(
    reference: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<{ readonly mediaType: string; readonly digest: Digest; readonly size: number } | undefined> {
    return this.manifests.head(reference, options);
  }

  /** PUT a manifest or index under a tag or its digest; returns the digest the registry confirmed. */
  putManifest(
    reference: string,
    bytes: Buffer,
    mediaType: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<Digest> {
    return this.manifests.put(reference, bytes, mediaType, options);
  }

  deleteManifest(digest: Digest, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    return this.manifests.delete(digest, options);
  }

  listTags(options: { readonly signal?: AbortSignal } = {}): Promise<string[]> {
    return this.manifests.listTags(options);
  }

  /** HEAD a blob: its size when present, else undefined. */
  async blobExists(
    digest: Digest,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<number | undefined> {
    const response = await this.client.request({
      registry: this.registry,
      method: 'HEAD',
      path: `/v2/${this.repository}/blobs/${digest}`,
      scopes: this.pullScope(),
      what: `${this.label}: checking blob ${digest}`,
      expect: [200, 404],
      signal: options.signal,
    });
    await response.body.dump();
    if (response.status !== 200) return undefined;
    this.client.rememberBlob(this.registry, this.repository, digest);
    return Number(headerValue(response.headers, 'content-length') ?? '0');
  }

  /**
   * Cross-repository mount (`POST ?mount=&from=`); true when the registry mounted it. The token
   * asked for covers both repositories, as the spec requires.
   */
  async mountBlob(
    digest: Digest,
    from: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<boolean> {
    if (from === this.repository) return (await this.blobExists(digest, options)) !== undefined;
    const query = new URLSearchParams({ mount: digest, from });
    const response = await this.client.request({
      registry: this.registry,
      method: 'POST',
      path: `/v2/${this.repository}/blobs/uploads/?${query.toString()}`,
      scopes: [...this.pushScope(), `repository:${from}:pull`],
      what: `${this.label}: mounting blob ${digest} from ${from}`,
      // 202: the registry could not mount and opened an upload instead, which we leave unused.
      expect: [201, 202],
      signal: options.signal,
    });
    await response.body.dump();
    if (response.status !== 201) return false;
    this.client.rememberBlob(this.registry, this.repository, digest);
    return true;
  }

  /** Repositories of this registry known (in the client's context) to hold `digest`: mount candidates. */
  knownBlobLocations(digest: Digest): readonly string[] {
    return this.client.context.blobs.known(this.registry, digest);
  }

  /** Opens a blob for reading: verified against digest (and size), resuming with Range after a reset. */
  fetchBlob(
    digest: Digest,
    options: { readonly size?: number; readonly signal?: AbortSignal; readonly verify?: boolean } = {},
  ): Readable {
    return fetchBlob(this, digest, options);
  }

  /**
   * Uploads a blob by streaming, resuming or restarting after a reset (see blob-upload.ts). A
   * reopenable body is needed for either; a plain stream gets one try.
   */
  uploadBlob(body: BlobBody, digest: Digest, size: number, options: UploadOptions = {}): Promise<void> {
    return this.uploader.upload(body, digest, size, options);
  }
}

/** `docker://host/repo:tag`, the label errors use for a reference. */
export function referenceLabel(ref: RegistryReference): string {
  return `docker://${formatReference(ref)}`;
}
