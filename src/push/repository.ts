import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StratumError, isStratumError } from '../errors.js';
import { VerifyingStream, digestAlgorithm } from '../oci/digest.js';
import { MediaType, type Digest } from '../oci/types.js';
import { rememberBlob } from './blob-locations.js';
import {
  RegistryClient,
  headerValue,
  isRetryableNetworkError,
  readText,
  type RegistryResponse,
} from './client.js';
import { formatReference, type RegistryReference } from './reference.js';
import { httpError, networkError } from './registry-error.js';

/**
 * The distribution API for one repository: the generic primitives that pull, push and the shared
 * layer cache are built on. Every byte that comes back is checked against its digest.
 */

/** What a registry may hand back for a manifest request; all four are accepted. */
export const MANIFEST_ACCEPT = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
] as const;

/** distribution refuses manifests over 4 MiB; so does stratum, to bound memory. */
const MAX_MANIFEST = 4 * 1024 * 1024;

export interface FetchedManifest {
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly size: number;
}

/** A blob body: a stream (sent once) or a function that opens it again for a resume or a restart. */
export type BlobBody = Readable | ((signal?: AbortSignal) => Promise<Readable> | Readable);

export interface UploadOptions {
  /** Send the blob in PATCH requests of this many bytes (for registries that want chunks). */
  readonly chunkSize?: number;
  /** Bytes handed to the network so far (restarts and resumes go back). */
  readonly onProgress?: (bytesSent: number) => void;
  readonly signal?: AbortSignal;
}

const RETRYABLE_UPLOAD_STATUS = [408, 429, 500, 502, 503, 504];

class RetryableUploadError extends Error {}

function sha256Of(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function digestOf(bytes: Buffer, algorithm: 'sha256' | 'sha512'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

export class RepositoryClient {
  /** `host/repository`, for messages. */
  readonly name: string;

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
  }

  private pullScope(): string[] {
    return this.forPush ? this.pushScope() : [`repository:${this.repository}:pull`];
  }

  private pushScope(): string[] {
    return [`repository:${this.repository}:pull,push`];
  }

  private refLabel(reference: string): string {
    return reference.includes(':') && /^[a-z0-9]+:/.test(reference)
      ? `docker://${this.name}@${reference}`
      : `docker://${this.name}:${reference}`;
  }

  /** GET a manifest or index by tag or digest; the bytes are checked against the digest. */
  async getManifest(
    reference: string,
    options: { readonly accept?: readonly string[]; readonly signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    const what = `${this.refLabel(reference)}: fetching manifest`;
    const { response, bytes } = await this.client.requestBytes(
      {
        registry: this.registry,
        method: 'GET',
        path: `/v2/${this.repository}/manifests/${reference}`,
        headers: { accept: (options.accept ?? MANIFEST_ACCEPT).join(', ') },
        scopes: this.pullScope(),
        what,
        expect: [200],
        signal: options.signal,
      },
      MAX_MANIFEST,
    );
    const digest = checkManifestDigest(
      bytes,
      reference,
      headerValue(response.headers, 'docker-content-digest'),
      what,
    );
    const contentType = headerValue(response.headers, 'content-type')?.split(';')[0]?.trim();
    const mediaType = manifestMediaType(bytes, contentType);
    return { mediaType, bytes, digest, size: bytes.length };
  }

  /** HEAD a manifest: its digest and media type, or undefined when the tag or digest is unknown. */
  async headManifest(
    reference: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<{ readonly mediaType: string; readonly digest: Digest; readonly size: number } | undefined> {
    const response = await this.client.request({
      registry: this.registry,
      method: 'HEAD',
      path: `/v2/${this.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.pullScope(),
      what: `${this.refLabel(reference)}: checking manifest`,
      expect: [200, 404],
      signal: options.signal,
    });
    await response.body.dump();
    if (response.status === 404) return undefined;
    const digest = headerValue(response.headers, 'docker-content-digest');
    if (digest === undefined) {
      // Without the header only a GET can tell; the spec makes the header a SHOULD.
      const fetched = await this.getManifest(reference, options);
      return { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.size };
    }
    return {
      mediaType: headerValue(response.headers, 'content-type')?.split(';')[0]?.trim() ?? '',
      digest: digest as Digest,
      size: Number(headerValue(response.headers, 'content-length') ?? '0'),
    };
  }

  /** PUT a manifest or index under a tag or its digest; returns the digest the registry confirmed. */
  async putManifest(
    reference: string,
    bytes: Buffer,
    mediaType: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<Digest> {
    const what = `${this.refLabel(reference)}: pushing manifest`;
    const digest = reference.startsWith('sha512:') ? digestOf(bytes, 'sha512') : sha256Of(bytes);
    if (/^[a-z0-9]+:/.test(reference) && reference !== digest) {
      throw new StratumError('DIGEST_MISMATCH', `${what}: manifest bytes are ${digest}, not ${reference}`);
    }
    const response = await this.client.request({
      registry: this.registry,
      method: 'PUT',
      path: `/v2/${this.repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      scopes: this.pushScope(),
      what,
      expect: [200, 201, 202],
      signal: options.signal,
    });
    await response.body.dump();
    const confirmed = headerValue(response.headers, 'docker-content-digest');
    if (confirmed !== undefined && confirmed !== digest) {
      throw new StratumError(
        'DIGEST_MISMATCH',
        `${what}: registry stored ${confirmed}, stratum sent ${digest}`,
      );
    }
    return digest;
  }

  async deleteManifest(digest: Digest, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const response = await this.client.request({
      registry: this.registry,
      method: 'DELETE',
      path: `/v2/${this.repository}/manifests/${digest}`,
      scopes: [`repository:${this.repository}:delete`],
      what: `${this.refLabel(digest)}: deleting manifest`,
      expect: [202, 200],
      signal: options.signal,
    });
    await response.body.dump();
  }

  async listTags(options: { readonly signal?: AbortSignal } = {}): Promise<string[]> {
    const what = `docker://${this.name}: listing tags`;
    const { bytes } = await this.client.requestBytes(
      {
        registry: this.registry,
        method: 'GET',
        path: `/v2/${this.repository}/tags/list`,
        scopes: this.pullScope(),
        what,
        expect: [200],
        signal: options.signal,
      },
      MAX_MANIFEST,
    );
    const parsed = JSON.parse(bytes.toString('utf8')) as {
      tags?: unknown;
    };
    return Array.isArray(parsed.tags)
      ? parsed.tags.filter((tag): tag is string => typeof tag === 'string')
      : [];
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
    rememberBlob(this.registry, this.repository, digest);
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
    rememberBlob(this.registry, this.repository, digest);
    return true;
  }

  /** Opens a blob for reading: verified against digest (and size), resuming with Range after a reset. */
  fetchBlob(
    digest: Digest,
    options: { readonly size?: number; readonly signal?: AbortSignal; readonly verify?: boolean } = {},
  ): Readable {
    const what = `${this.label}: blob ${digest}`;
    const body = new ResumingDownload(
      (received) => this.openBlobAt(digest, received, what, options.signal),
      what,
      this.client.retry.attempts,
      this.client.retry.baseDelayMs,
      this.client.retry.maxDelayMs,
      options.signal,
    );
    rememberBlob(this.registry, this.repository, digest);
    if (options.verify === false) return body;
    const verifier = new VerifyingStream(digest, options.size, what);
    body.on('error', (error) => verifier.destroy(error));
    return body.pipe(verifier);
  }

  /** GET a blob from byte `received` on; `skip` is what a server that ignored Range sent again. */
  private async openBlobAt(
    digest: Digest,
    received: number,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<{ body: Readable; skip: number }> {
    const response = await this.client.request({
      registry: this.registry,
      method: 'GET',
      path: `/v2/${this.repository}/blobs/${digest}`,
      headers: received > 0 ? { range: `bytes=${received}-` } : {},
      scopes: this.pullScope(),
      what: `${what}: fetching`,
      expect: [200, 206],
      signal,
    });
    let skip = 0;
    if (received > 0) {
      const range = headerValue(response.headers, 'content-range');
      const start = range !== undefined ? Number(/bytes (\d+)-/.exec(range)?.[1] ?? '0') : 0;
      skip = response.status === 206 ? received - start : received;
      if (skip < 0) {
        response.body.destroy();
        throw new StratumError('REGISTRY', `${what}: registry resumed at byte ${start}, after ${received}`);
      }
    }
    return { body: response.body, skip };
  }

  /**
   * Uploads a blob by streaming: POST, then one PATCH with the whole body (or chunked PATCHes of
   * `chunkSize`), then PUT `?digest=`. After a reset the upload resumes at the offset the registry
   * reports (GET on the upload URL); where it cannot, the blob starts again from a new POST. A
   * reopenable body is needed for either; a plain stream gets one try.
   */
  async uploadBlob(body: BlobBody, digest: Digest, size: number, options: UploadOptions = {}): Promise<void> {
    const what = `${this.label}: uploading blob ${digest}`;
    let used = false;
    const reopenable = typeof body === 'function';
    const open = async (): Promise<Readable> => {
      if (typeof body === 'function') return body(options.signal);
      if (used)
        throw new StratumError('REGISTRY', `${what}: upload interrupted and the stream cannot be re-read`);
      used = true;
      return body;
    };
    // One failure budget per blob, shared by resumes and restarts, so the bound is `attempts` sends.
    const attempts = this.client.retry.attempts;
    let failures = 0;
    let lastFailure = '';
    const describe = (error: unknown): string =>
      error instanceof Error ? error.message.replace(`${what}: `, '') : String(error);
    for (;;) {
      try {
        let location = await this.startUpload(what, options.signal);
        let offset = 0;
        for (;;) {
          try {
            location = await this.sendFrom(location, offset, size, open, what, options);
            break;
          } catch (error) {
            if (!(error instanceof RetryableUploadError || isRetryableNetworkError(error)) || !reopenable)
              throw error;
            failures++;
            lastFailure = describe(error);
            if (failures >= attempts) throw new RetryableUploadError(lastFailure);
            await this.pause(failures, options.signal);
            const status = await this.uploadStatus(location, what, options.signal);
            // The registry lost or refuses the upload: start this blob again from a new POST.
            if (status === undefined) throw new RetryableUploadError(lastFailure, { cause: 'restart' });
            location = status.location;
            offset = status.offset;
          }
        }
        await this.finishUpload(location, digest, what, options.signal);
        rememberBlob(this.registry, this.repository, digest);
        return;
      } catch (error) {
        const retryable = error instanceof RetryableUploadError || isRetryableNetworkError(error);
        const counted = error instanceof RetryableUploadError && error.cause === 'restart';
        if (retryable && !(error instanceof RetryableUploadError)) {
          failures++;
          lastFailure = describe(error);
        }
        if (!retryable || !reopenable || failures >= attempts) {
          if (retryable) {
            throw new StratumError(
              'REGISTRY',
              `${what}: gave up after ${failures} failed tries (last: ${lastFailure})`,
            );
          }
          if (isStratumError(error)) throw error;
          throw networkError(what, error);
        }
        if (!counted) await this.pause(failures, options.signal);
      }
    }
  }

  private async pause(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    const delay = Math.min(this.client.retry.maxDelayMs, this.client.retry.baseDelayMs * 2 ** (attempt - 1));
    try {
      await sleep(delay, undefined, signal ? { signal } : {});
    } catch {
      throw new StratumError('ABORTED', `${this.label}: aborted`);
    }
  }

  private async startUpload(what: string, signal: AbortSignal | undefined): Promise<string> {
    const response = await this.client.request({
      registry: this.registry,
      method: 'POST',
      path: `/v2/${this.repository}/blobs/uploads/`,
      scopes: this.pushScope(),
      what: `${what}: starting upload`,
      expect: [202],
      signal,
    });
    await response.body.dump();
    return this.locationOf(response, what);
  }

  private locationOf(response: RegistryResponse, what: string): string {
    const location = headerValue(response.headers, 'location');
    if (location === undefined || location === '') {
      throw new StratumError('REGISTRY', `${what}: registry answered ${response.status} without a Location`);
    }
    return new URL(location, response.url).toString();
  }

  /** Where an interrupted upload stands: GET on its URL answers 204 with `Range: 0-N`. */
  private async uploadStatus(
    location: string,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<{ location: string; offset: number } | undefined> {
    try {
      const response = await this.client.request({
        registry: this.registry,
        method: 'GET',
        path: location,
        scopes: this.pushScope(),
        what: `${what}: upload status`,
        expect: [204, 200, 400, 404, 416],
        signal,
      });
      await response.body.dump();
      if (response.status !== 204 && response.status !== 200) return undefined;
      const range = headerValue(response.headers, 'range');
      const match = range !== undefined ? /^(?:bytes=)?0-(\d+)$/.exec(range) : null;
      // distribution writes "0-0" for an empty upload too: read it as 0 (a 1-byte upload then gets
      // a 416 on resume and restarts, which is correct if slower).
      const end = match ? Number(match[1]) : 0;
      const offset = end > 0 ? end + 1 : 0;
      return { location: this.locationOf(response, what), offset };
    } catch (error) {
      if (isRetryableNetworkError(error) || (isStratumError(error) && error.code === 'REGISTRY'))
        return undefined;
      throw error;
    }
  }

  /** Streams bytes [offset, size) in one PATCH, or in chunkSize PATCHes; returns the last Location. */
  private async sendFrom(
    initialLocation: string,
    offset: number,
    size: number,
    open: () => Promise<Readable>,
    what: string,
    options: UploadOptions,
  ): Promise<string> {
    let location = initialLocation;
    if (offset >= size) return location;
    const source = await open();
    const reader = new ChunkReader(source);
    try {
      await reader.skip(offset);
      options.onProgress?.(offset);
      let position = offset;
      const chunkSize =
        options.chunkSize !== undefined && options.chunkSize > 0 ? options.chunkSize : size - offset;
      while (position < size) {
        const length = Math.min(chunkSize, size - position);
        const start = position;
        const body = Readable.from(
          reader.take(length, (n) => {
            position += n;
            options.onProgress?.(position);
          }),
          { objectMode: false },
        );
        const headers: Record<string, string> = {
          'content-type': 'application/octet-stream',
          'content-length': String(length),
        };
        // A whole-blob PATCH goes without Content-Range (Docker's streaming mode); chunks and resumes need it.
        if (start > 0 || length < size) headers['content-range'] = `${start}-${start + length - 1}`;
        const response = await this.client.request({
          registry: this.registry,
          method: 'PATCH',
          path: location,
          headers,
          body,
          scopes: this.pushScope(),
          what: `${what}: sending bytes ${start}-${start + length - 1}`,
          expect: [202, 204, ...RETRYABLE_UPLOAD_STATUS, 416],
          signal: options.signal,
        });
        if (response.status !== 202 && response.status !== 204) {
          const text = await readText(response.body, 64 * 1024);
          throw new RetryableUploadError(httpError(`sending bytes`, response.status, text).message);
        }
        await response.body.dump();
        if (position !== start + length) {
          throw new StratumError(
            'DIGEST_MISMATCH',
            `${what}: the blob's source ended after ${position} of ${size} bytes`,
          );
        }
        location = this.locationOf(response, what);
      }
      return location;
    } finally {
      source.destroy();
    }
  }

  private async finishUpload(
    location: string,
    digest: Digest,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    let response: RegistryResponse;
    try {
      response = await this.client.request({
        registry: this.registry,
        method: 'PUT',
        path: url.toString(),
        headers: { 'content-type': 'application/octet-stream' },
        scopes: this.pushScope(),
        what: `${what}: committing`,
        expect: [201, 204, 404],
        signal,
      });
    } catch (error) {
      // The commit may have landed before the connection dropped: the blob's presence decides.
      if ((await this.blobExists(digest, signal ? { signal } : {})) !== undefined) return;
      throw error;
    }
    if (response.status === 404) {
      const text = await readText(response.body, 64 * 1024);
      if ((await this.blobExists(digest, signal ? { signal } : {})) !== undefined) return;
      // An upload the registry lost (BLOB_UPLOAD_UNKNOWN after a reset): start the blob again.
      if (text.includes('BLOB_UPLOAD_UNKNOWN')) throw new RetryableUploadError('upload unknown at commit');
      throw httpError(`${what}: committing`, 404, text);
    }
    await response.body.dump();
    const confirmed = headerValue(response.headers, 'docker-content-digest');
    if (confirmed !== undefined && confirmed !== digest) {
      throw new StratumError('DIGEST_MISMATCH', `${what}: registry stored ${confirmed}`);
    }
  }
}

/**
 * A blob download that survives connection resets: after a retryable error it asks again from the
 * byte it got to (Range), within the retry bound. Written as a Readable over the response's own
 * events rather than an async generator, which cost a promise per chunk on gigabyte layers.
 */
class ResumingDownload extends Readable {
  private body: Readable | undefined;
  private starting = false;
  private received = 0;
  private skip = 0;
  private failures = 0;

  constructor(
    private readonly open: (received: number) => Promise<{ body: Readable; skip: number }>,
    private readonly what: string,
    private readonly attempts: number,
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _read(): void {
    if (this.body !== undefined) this.body.resume();
    else if (!this.starting) this.start();
  }

  private start(): void {
    this.starting = true;
    this.open(this.received).then(
      ({ body, skip }) => {
        this.starting = false;
        if (this.destroyed) {
          body.destroy();
          return;
        }
        this.body = body;
        this.skip = skip;
        body.on('data', (chunk: Buffer) => {
          let buffer = chunk;
          if (this.skip > 0) {
            const drop = Math.min(this.skip, buffer.length);
            this.skip -= drop;
            buffer = buffer.subarray(drop);
            if (buffer.length === 0) return;
          }
          this.received += buffer.length;
          if (!this.push(buffer)) body.pause();
        });
        body.on('end', () => this.push(null));
        body.on('error', (error) => {
          this.failed(error);
        });
      },
      (error: unknown) => {
        this.starting = false;
        this.destroy(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private failed(error: unknown): void {
    this.body = undefined;
    if (this.destroyed) return;
    this.failures++;
    if (this.signal?.aborted === true) {
      this.destroy(new StratumError('ABORTED', `${this.what}: aborted`));
      return;
    }
    if (!isRetryableNetworkError(error) || this.failures >= this.attempts) {
      this.destroy(isStratumError(error) ? error : networkError(`${this.what}: fetching`, error));
      return;
    }
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (this.failures - 1));
    // Marked as starting so that a _read during the pause does not open a second request.
    this.starting = true;
    setTimeout(() => {
      if (!this.destroyed) this.start();
    }, delay);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.body?.destroy();
    callback(error);
  }
}

/** Pulls exact byte counts out of a stream without holding more than one of its chunks. */
class ChunkReader {
  private readonly iterator: AsyncIterator<unknown>;
  private pending: Buffer | undefined;

  constructor(source: Readable) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async next(): Promise<Buffer | undefined> {
    if (this.pending !== undefined) {
      const out = this.pending;
      this.pending = undefined;
      return out;
    }
    const result = await this.iterator.next();
    if (result.done === true) return undefined;
    const value = result.value;
    return Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
  }

  async skip(count: number): Promise<void> {
    let left = count;
    while (left > 0) {
      const chunk = await this.next();
      if (chunk === undefined) return;
      if (chunk.length > left) {
        this.pending = chunk.subarray(left);
        return;
      }
      left -= chunk.length;
    }
  }

  async *take(count: number, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
    let left = count;
    while (left > 0) {
      const chunk = await this.next();
      if (chunk === undefined) return;
      if (chunk.length > left) {
        this.pending = chunk.subarray(left);
        onBytes(left);
        yield chunk.subarray(0, left);
        return;
      }
      left -= chunk.length;
      onBytes(chunk.length);
      yield chunk;
    }
  }
}

/**
 * A manifest's digest is taken over its exact bytes. Fetched by digest, the bytes must match it;
 * by tag, they must match the registry's Docker-Content-Digest when it sends one.
 */
function checkManifestDigest(
  bytes: Buffer,
  reference: string,
  header: string | undefined,
  what: string,
): Digest {
  const byDigest = /^[a-z0-9]+:[a-f0-9]+$/.test(reference);
  const expected = byDigest ? reference : header;
  const algorithm = expected?.startsWith('sha512:') === true ? 'sha512' : 'sha256';
  const actual = digestOf(bytes, algorithm);
  if (expected !== undefined && /^sha(256|512):/.test(expected) && expected !== actual) {
    throw new StratumError(
      'DIGEST_MISMATCH',
      `${what}: registry sent bytes with digest ${actual}, expected ${expected}`,
    );
  }
  return algorithm === 'sha256' ? actual : digestOf(bytes, digestAlgorithm(actual));
}

/** The Content-Type, or the document's own mediaType when the registry sends a generic type. */
function manifestMediaType(bytes: Buffer, contentType: string | undefined): string {
  if (
    contentType !== undefined &&
    contentType !== '' &&
    contentType !== 'application/json' &&
    contentType !== 'text/plain'
  ) {
    return contentType;
  }
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
    if (typeof parsed.mediaType === 'string') return parsed.mediaType;
    return Array.isArray(parsed.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  } catch {
    return contentType ?? 'application/octet-stream';
  }
}

/** `docker://host/repo:tag`, the label errors use for a reference. */
export function referenceLabel(ref: RegistryReference): string {
  return `docker://${formatReference(ref)}`;
}
