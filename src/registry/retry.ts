import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { StratumError, isStratumError } from '../errors.js';
import type { RegistryResponse } from './http.js';
import { errorCode, networkError, type Secrets } from './registry-error.js';

/**
 * The one retry policy of the registry client, and the one list of conditions it retries on.
 * Every request goes through it: ping, token, HEAD, manifest GET/PUT, blob upload, download and
 * mount, tag list. Retried: connection resets and timeouts, 408/429/5xx (429 and 503 after their
 * Retry-After), and bodies cut short (fewer bytes than Content-Length). Not retried: anything
 * the registry said on purpose (4xx) and content that arrived whole but wrong (a digest
 * mismatch is a lying registry, not a flaky network).
 */
export interface RetryPolicy {
  /** Total tries of one request (the first included). */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** A Retry-After longer than this is cut to it. */
  readonly maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 250,
  maxDelayMs: 8000,
  maxRetryAfterMs: 30_000,
};

/** The code of a body that ended before its Content-Length (see readWholeBody). */
const TRUNCATED_BODY = 'STRATUM_TRUNCATED_BODY';

export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

const RETRYABLE_NETWORK: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ECONNABORTED',
  'EAI_AGAIN',
  TRUNCATED_BODY,
]);

export function isRetryableNetworkError(error: unknown): boolean {
  // A reset reported as a StratumError (a streamed request that was not retried here) still counts.
  if (isStratumError(error))
    return (
      error.code === 'REGISTRY' &&
      error.cause !== undefined &&
      !isStratumError(error.cause) &&
      isRetryableNetworkError(error.cause)
    );
  const code = errorCode(error);
  return code !== undefined && RETRYABLE_NETWORK.has(code);
}

/** Exponential backoff with jitter, or the server's Retry-After (bounded) when it sent one. */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfterMs: number | undefined): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return exponential / 2 + Math.random() * (exponential / 2);
}

export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * Reads a whole (small) body. A connection cut mid-body may end the stream quietly, so the
 * length is checked against Content-Length: fewer bytes is a retryable truncation.
 */
export async function readWholeBody(
  body: Readable,
  contentLength: string | undefined,
  limit: number,
  tooLarge: () => Error,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(buffer);
  }
  const expected = contentLength === undefined ? undefined : Number(contentLength);
  if (expected !== undefined && Number.isSafeInteger(expected) && size < expected) {
    throw Object.assign(new Error(`body ended after ${size} of ${expected} bytes`), {
      code: TRUNCATED_BODY,
    });
  }
  return Buffer.concat(chunks);
}

/** Read through a function so the compiler does not narrow `aborted` across an await. */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Waits out one retry delay; an abort during the wait ends it with ABORTED. */
export async function backoff(
  policy: RetryPolicy,
  attempt: number,
  retryAfterMs: number | undefined,
  signal: AbortSignal | undefined,
  what = 'registry request',
): Promise<void> {
  try {
    await sleep(retryDelay(policy, attempt, retryAfterMs), undefined, signal ? { signal } : {});
  } catch {
    throw new StratumError('ABORTED', `${what}: aborted`);
  }
}

/**
 * One logical request: `send` again after a retryable network error, or after a retryable
 * status the caller did not say it handles (Retry-After honoured), up to `attempts` tries.
 */
export async function sendWithRetry(
  policy: RetryPolicy,
  send: () => Promise<RegistryResponse>,
  options: {
    readonly attempts: number;
    readonly expect: readonly number[];
    readonly what: string;
    readonly signal: AbortSignal | undefined;
    readonly secrets?: Secrets;
  },
): Promise<RegistryResponse> {
  const { what, signal } = options;
  for (let attempt = 1; ; attempt++) {
    if (isAborted(signal)) throw new StratumError('ABORTED', `${what}: aborted`);
    let response: RegistryResponse;
    try {
      response = await send();
    } catch (error) {
      if (isAborted(signal)) throw new StratumError('ABORTED', `${what}: aborted`);
      if (isStratumError(error)) throw error;
      if (attempt < options.attempts && isRetryableNetworkError(error)) {
        await backoff(policy, attempt, undefined, signal, what);
        continue;
      }
      throw networkError(what, error, options.secrets);
    }
    if (
      RETRYABLE_STATUS.has(response.status) &&
      !options.expect.includes(response.status) &&
      attempt < options.attempts
    ) {
      const retryAfter = parseRetryAfter(response.headers['retry-after']);
      await response.body.dump().catch(() => undefined);
      await backoff(policy, attempt, retryAfter, signal, what);
      continue;
    }
    return response;
  }
}

/**
 * A request whose whole (small) body is wanted (manifests, tag lists, tokens): a body reset or
 * cut short while being read is retried like a failed request, within the same policy.
 */
export async function sendAndReadWithRetry(
  policy: RetryPolicy,
  send: () => Promise<RegistryResponse>,
  limit: number,
  options: { readonly what: string; readonly signal: AbortSignal | undefined; readonly secrets?: Secrets },
): Promise<{ readonly response: RegistryResponse; readonly bytes: Buffer }> {
  const { what, signal } = options;
  for (let attempt = 1; ; attempt++) {
    const response = await send();
    try {
      const length = response.headers['content-length'];
      const bytes = await readWholeBody(
        response.body,
        Array.isArray(length) ? length[0] : length,
        limit,
        () => new StratumError('REGISTRY', `${what}: response larger than ${limit} bytes`),
      );
      return { response, bytes };
    } catch (error) {
      if (isAborted(signal)) throw new StratumError('ABORTED', `${what}: aborted`);
      if (isStratumError(error)) throw error;
      if (attempt < policy.attempts && isRetryableNetworkError(error)) {
        await backoff(policy, attempt, undefined, signal, what);
        continue;
      }
      throw networkError(what, error, options.secrets);
    }
  }
}
