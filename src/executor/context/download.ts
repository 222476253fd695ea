import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import { StratumError } from '../../errors.js';
import { DigestingStream } from '../../oci/digest.js';
import { handedOverTrust } from '../../util/extra-ca-certs.js';

/**
 * ADD <url>: downloads with undici into a temporary directory, as Docker's classic builder does:
 * the file gets mode 0600, its mtime from `Last-Modified` (the Unix epoch when absent or
 * unparsable, which is what Docker's zero time becomes), and `--checksum` is verified over the
 * bytes received. URLs are never extracted.
 */

export interface Download {
  /** The URL as shown to people (credentials removed). */
  readonly url: string;
  /** Host path of the downloaded file (inside `tmpDir`). */
  readonly path: string;
  /** The name the file takes in a directory destination: the URL path's last component. */
  readonly fileName: string;
  readonly size: number;
  readonly digest: `sha256:${string}`;
  readonly mtimeMs: number;
}

/** The URL without user:password, for messages and names (a credential is never printed). */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username === '' && parsed.password === '') return url;
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/**
 * Git sources as BuildKit recognises them: `git@host:repo`, `git://`, `ssh://`, or an http(s)
 * URL whose path ends in `.git` (a `#ref` fragment allowed).
 */
export function isGitSource(source: string): boolean {
  if (/^git@[^:]+:/.test(source) || /^(git|ssh):\/\//i.test(source)) return true;
  if (!isUrl(source)) return false;
  try {
    return new URL(source).pathname.endsWith('.git');
  } catch {
    return false;
  }
}

/** Docker's rule: the last non-empty component of the URL path (`''` when there is none). */
export function urlFileName(url: string): string {
  const path = new URL(url).pathname.replace(/\/+$/, '');
  const name = path.slice(path.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

/**
 * What went wrong, from undici's fetch error: its own message is only "fetch failed", and the
 * reason (a refused connection, an unknown host, a certificate no CA signs) is its cause.
 */
function fetchFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause: unknown = error.cause;
  if (!(cause instanceof Error)) return error.message;
  const code = (cause as { code?: unknown }).code;
  return `${cause.message}${typeof code === 'string' && !cause.message.includes(code) ? ` (${code})` : ''}`;
}

let trustedAgent: import('undici').Agent | undefined;

/**
 * The agent for downloads with handed-over certificates, made once. No keep-alive (pipelining 0:
 * each connection closes with its response), so no idle socket outlives the download, as with
 * undici's global agent.
 */
function downloadAgent(Agent: typeof import('undici').Agent, ca: readonly string[]): import('undici').Agent {
  trustedAgent ??= new Agent({ pipelining: 0, connect: { ca: [...ca] } });
  return trustedAgent;
}

export async function downloadUrl(
  url: string,
  tmpDir: string,
  options: { readonly checksum?: string; readonly signal?: AbortSignal } = {},
): Promise<Download> {
  const what = `ADD ${displayUrl(url)}`;
  if (options.checksum !== undefined && !/^sha256:[a-f0-9]{64}$/.test(options.checksum)) {
    throw new StratumError(
      'BUILD_FAILED',
      `${what}: --checksum must be sha256:<64 hex digits>, got "${options.checksum}"`,
    );
  }
  // fetch refuses URLs with user:password; send them as Basic auth, as Go's client does
  // (fetch drops the header on a cross-origin redirect).
  const target = new URL(url);
  const headers: Record<string, string> = {};
  if (target.username !== '' || target.password !== '') {
    const userinfo = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers.authorization = `Basic ${Buffer.from(userinfo).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  let response;
  try {
    // Loaded here, not at start-up: most builds never download anything.
    const { fetch, Agent } = await import('undici');
    // NODE_EXTRA_CA_CERTS as stratum's re-start in a user namespace was handed it (extra-ca-certs.ts).
    const trust = await handedOverTrust();
    response = await fetch(target, {
      redirect: 'follow',
      headers,
      ...(trust === undefined ? {} : { dispatcher: downloadAgent(Agent, trust.ca) }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    const message = fetchFailure(error).split(url).join(displayUrl(url));
    throw new StratumError('IO', `${what}: download failed: ${message}`, { cause: error });
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel();
    throw new StratumError('IO', `${what}: download failed: HTTP ${response.status} ${response.statusText}`);
  }
  const dir = await mkdtemp(join(tmpDir, 'stratum-add-'));
  const path = join(dir, 'download');
  const digesting = new DigestingStream('sha256');
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      digesting,
      createWriteStream(path, { mode: 0o600, flags: 'wx' }),
      ...([options.signal ? { signal: options.signal } : {}] as const),
    );
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new StratumError(
      'IO',
      `${what}: download failed: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
  const digest = digesting.digest as `sha256:${string}`;
  if (options.checksum !== undefined && digest !== options.checksum) {
    await rm(dir, { recursive: true, force: true });
    throw new StratumError(
      'DIGEST_MISMATCH',
      `${what}: checksum mismatch: expected ${options.checksum}, got ${digest}`,
    );
  }
  const lastModified = response.headers.get('last-modified');
  const parsed = lastModified === null ? NaN : Date.parse(lastModified);
  const mtimeMs = Number.isNaN(parsed) ? 0 : parsed;
  await utimes(path, mtimeMs / 1000, mtimeMs / 1000);
  const size = (await stat(path)).size;
  return { url: displayUrl(url), path, fileName: urlFileName(url), size, digest, mtimeMs };
}
