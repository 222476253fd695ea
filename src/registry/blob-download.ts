import { Readable } from 'node:stream';
import { StratumError, isStratumError } from '../errors.js';
import { VerifyingStream } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import { headerValue } from './http.js';
import { networkError, type Secrets } from './registry-error.js';
import type { RepositoryScope } from './repository-scope.js';
import { isRetryableNetworkError, retryDelay, type RetryPolicy } from './retry.js';

/** Blob download: verified against its digest and size, resumed with Range after a reset. */

/** Opens a blob for reading: verified against digest (and size), resuming with Range after a reset. */
export function fetchBlob(
  repo: RepositoryScope,
  digest: Digest,
  options: { readonly size?: number; readonly signal?: AbortSignal; readonly verify?: boolean } = {},
): Readable {
  const what = `${repo.label}: blob ${digest}`;
  const body = new ResumingDownload(
    (received) => openBlobAt(repo, digest, received, what, options.signal),
    what,
    repo.client.retry,
    repo.client.context.secrets,
    options.signal,
  );
  repo.client.rememberBlob(repo.registry, repo.repository, digest);
  if (options.verify === false) return body;
  const verifier = new VerifyingStream(digest, options.size, what);
  body.on('error', (error) => verifier.destroy(error));
  return body.pipe(verifier);
}

/** GET a blob from byte `received` on; `skip` is what a server that ignored Range sent again. */
async function openBlobAt(
  repo: RepositoryScope,
  digest: Digest,
  received: number,
  what: string,
  signal: AbortSignal | undefined,
): Promise<{ body: Readable; skip: number }> {
  const response = await repo.client.request({
    registry: repo.registry,
    method: 'GET',
    path: `/v2/${repo.repository}/blobs/${digest}`,
    headers: received > 0 ? { range: `bytes=${received}-` } : {},
    scopes: repo.pullScope(),
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
    private readonly retry: RetryPolicy,
    private readonly secrets: Secrets,
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
    if (!isRetryableNetworkError(error) || this.failures >= this.retry.attempts) {
      this.destroy(
        isStratumError(error) ? error : networkError(`${this.what}: fetching`, error, this.secrets),
      );
      return;
    }
    const delay = retryDelay(this.retry, this.failures, undefined);
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
