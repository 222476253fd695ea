import { Readable } from 'node:stream';
import { StratumError, isStratumError } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { headerValue, readText, type RegistryResponse } from './http.js';
import { httpError, networkError } from './registry-error.js';
import type { RepositoryScope } from './repository-scope.js';
import { RETRYABLE_STATUS, backoff, isRetryableNetworkError } from './retry.js';

/**
 * Blob upload by streaming: POST, then one PATCH with the whole body (or chunked PATCHes), then
 * PUT `?digest=`. After a reset it resumes at the offset the registry reports, or restarts the
 * blob from a new POST; resumes and restarts share one failure bound per blob.
 */

/** A blob body: a stream (sent once) or a function that opens it again for a resume or a restart. */
export type BlobBody = Readable | ((signal?: AbortSignal) => Promise<Readable> | Readable);

export interface UploadOptions {
  /** Send the blob in PATCH requests of this many bytes (for registries that want chunks). */
  readonly chunkSize?: number;
  /** Bytes handed to the network so far (restarts and resumes go back). */
  readonly onProgress?: (bytesSent: number) => void;
  readonly signal?: AbortSignal;
}

class RetryableUploadError extends Error {}

export class BlobUploader {
  constructor(private readonly repo: RepositoryScope) {}

  /**
   * Uploads a blob by streaming: POST, then one PATCH with the whole body (or chunked PATCHes of
   * `chunkSize`), then PUT `?digest=`. After a reset the upload resumes at the offset the registry
   * reports (GET on the upload URL); where it cannot, the blob starts again from a new POST. A
   * reopenable body is needed for either; a plain stream gets one try.
   */
  async upload(body: BlobBody, digest: Digest, size: number, options: UploadOptions = {}): Promise<void> {
    const what = `${this.repo.label}: uploading blob ${digest}`;
    let used = false;
    const reopenable = typeof body === 'function';
    const open = async (): Promise<Readable> => {
      if (typeof body === 'function') return body(options.signal);
      if (used)
        throw new StratumError('REGISTRY', `${what}: upload interrupted and the stream cannot be re-read`);
      used = true;
      return body;
    };
    // `attempts` failures in a row end the blob, resumes and restarts alike. A chunk the registry
    // takes beyond the furthest byte it had taken before starts the count again (as
    // go-containerregistry's retry transport counts per request): a long chunked push on a flaky
    // network gives up only when it stops making progress, and it cannot loop, as that furthest
    // byte only grows.
    const attempts = this.repo.client.retry.attempts;
    let failures = 0;
    let furthest = 0;
    let location = '';
    /** A chunk the registry took: where the upload goes on, even if a later chunk fails. */
    const accepted = (end: number, next: string): void => {
      location = next;
      if (end <= furthest) return;
      furthest = end;
      failures = 0;
    };
    let lastFailure = '';
    const describe = (error: unknown): string =>
      error instanceof Error ? error.message.replace(`${what}: `, '') : String(error);
    for (;;) {
      try {
        location = await this.startUpload(what, options.signal);
        let offset = 0;
        for (;;) {
          try {
            location = await this.sendFrom(location, offset, size, open, what, options, accepted);
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
        this.repo.client.rememberBlob(this.repo.registry, this.repo.repository, digest);
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
          throw networkError(what, error, this.repo.client.context.secrets);
        }
        if (!counted) await this.pause(failures, options.signal);
      }
    }
  }

  private pause(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    return backoff(this.repo.client.retry, attempt, undefined, signal, this.repo.label);
  }

  private async startUpload(what: string, signal: AbortSignal | undefined): Promise<string> {
    const response = await this.repo.client.request({
      registry: this.repo.registry,
      method: 'POST',
      path: `/v2/${this.repo.repository}/blobs/uploads/`,
      scopes: this.repo.pushScope(),
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
      const response = await this.repo.client.request({
        registry: this.repo.registry,
        method: 'GET',
        path: location,
        scopes: this.repo.pushScope(),
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
    accepted: (end: number, location: string) => void,
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
        const response = await this.repo.client.request({
          registry: this.repo.registry,
          method: 'PATCH',
          path: location,
          headers,
          body,
          scopes: this.repo.pushScope(),
          what: `${what}: sending bytes ${start}-${start + length - 1}`,
          expect: [202, 204, ...RETRYABLE_STATUS, 416],
          signal: options.signal,
        });
        if (response.status !== 202 && response.status !== 204) {
          const text = await readText(response.body, 64 * 1024);
          throw new RetryableUploadError(
            httpError(`sending bytes`, response.status, text, this.repo.client.context.secrets).message,
          );
        }
        await response.body.dump();
        if (position !== start + length) {
          throw new StratumError(
            'DIGEST_MISMATCH',
            `${what}: the blob's source ended after ${position} of ${size} bytes`,
          );
        }
        location = this.locationOf(response, what);
        accepted(position, location);
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
      response = await this.repo.client.request({
        registry: this.repo.registry,
        method: 'PUT',
        path: url.toString(),
        headers: { 'content-type': 'application/octet-stream' },
        scopes: this.repo.pushScope(),
        what: `${what}: committing`,
        expect: [201, 204, 404],
        signal,
      });
    } catch (error) {
      // The commit may have landed before the connection dropped: the blob's presence decides.
      if ((await this.repo.blobExists(digest, signal ? { signal } : {})) !== undefined) return;
      throw error;
    }
    if (response.status === 404) {
      const text = await readText(response.body, 64 * 1024);
      if ((await this.repo.blobExists(digest, signal ? { signal } : {})) !== undefined) return;
      // An upload the registry lost (BLOB_UPLOAD_UNKNOWN after a reset): start the blob again.
      if (text.includes('BLOB_UPLOAD_UNKNOWN')) throw new RetryableUploadError('upload unknown at commit');
      throw httpError(`${what}: committing`, 404, text, this.repo.client.context.secrets);
    }
    await response.body.dump();
    const confirmed = headerValue(response.headers, 'docker-content-digest');
    if (confirmed !== undefined && confirmed !== digest) {
      throw new StratumError('DIGEST_MISMATCH', `${what}: registry stored ${confirmed}`);
    }
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
