import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent, Dispatcher } from 'undici';
import { StratumError, isStratumError } from '../errors.js';
import { parseChallenges, mergeScopes, scopesCover, type Challenge } from './challenge.js';
import { resolveCredential, type AuthFileOptions, type Credential } from './credentials.js';
import { apiHost, isLoopbackRegistry } from './reference.js';
import { httpError, networkError, registerSecret } from './registry-error.js';
import {
  DEFAULT_RETRY,
  RETRYABLE_STATUS,
  isRetryableNetworkError,
  parseRetryAfter,
  readWholeBody,
  retryDelay,
  type RetryPolicy,
} from './retry.js';

export { DEFAULT_RETRY, isRetryableNetworkError, type RetryPolicy };

/**
 * The HTTP side of the distribution API: one undici Agent, one session per registry host
 * (scheme, auth challenge, cached tokens), retries with backoff, and redirects followed by hand so
 * that an Authorization header never goes to another origin.
 */

export interface RegistryClientOptions extends AuthFileOptions {
  /** Hosts (`host` or `host:port`) reached over plain HTTP, or HTTPS without verification. */
  readonly insecureRegistries?: readonly string[];
  /** Overrides the Docker config lookup (used by `login` to check a credential before saving it). */
  readonly credential?: (registry: string) => Promise<Credential | undefined>;
  readonly retry?: Partial<RetryPolicy>;
  readonly userAgent?: string;
}

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

export interface RegistryRequest {
  readonly registry: string;
  readonly method: HttpMethod;
  /** `/v2/...` on the registry, or an absolute URL (an upload Location). */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A Buffer is re-sent on a retry; a stream is sent once, and the caller decides what to do on failure. */
  readonly body?: Buffer | Readable;
  /** Token scopes this request needs: `repository:NAME:pull,push`. */
  readonly scopes: readonly string[];
  /** Names the reference and the operation, for errors: `docker://host/repo:tag: pushing manifest`. */
  readonly what: string;
  /** Statuses the caller handles itself; any other status becomes an error. */
  readonly expect: readonly number[];
  readonly signal?: AbortSignal | undefined;
}

export interface RegistryResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
  readonly url: URL;
}

interface Token {
  readonly scopes: readonly string[];
  readonly value: string;
  readonly expiresAt: number;
}

interface Session {
  readonly base: URL;
  readonly secure: boolean;
  challenge: Challenge | undefined;
  credential: Credential | undefined;
  credentialLoaded: boolean;
  readonly tokens: Token[];
  /** Token requests under way, by scope list: parallel requests share one. */
  readonly pendingTokens: Map<string, Promise<Token>>;
  /** Token requests made: tests check tokens are reused. */
  tokenRequests: number;
}

/** One request as the retry and redirect loops see it. */
interface OutgoingRequest {
  readonly url: URL;
  readonly method: HttpMethod;
  readonly headers: Record<string, string>;
  readonly body: Buffer | Readable | undefined;
  readonly skipTlsVerify: boolean;
  readonly what: string;
  readonly signal: AbortSignal | undefined;
  readonly authorization?: string | undefined;
  readonly authOrigin?: string;
}

interface Http {
  readonly request: typeof import('undici').request;
  readonly agent: Agent;
  readonly unverifiedAgent: Agent;
}

const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 * 1024;

export class RegistryClient {
  /**
   * undici is loaded on the first request, not at start-up: a build that never talks to a
   * registry should not pay for loading an HTTP client (about 0.15 s).
   */
  private http: Promise<Http> | undefined;
  private readonly sessions = new Map<string, Promise<Session>>();
  readonly retry: RetryPolicy;
  private readonly insecure: ReadonlySet<string>;

  constructor(readonly options: RegistryClientOptions = {}) {
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.insecure = new Set((options.insecureRegistries ?? []).map((host) => host.toLowerCase()));
  }

  private loadHttp(): Promise<Http> {
    this.http ??= import('undici').then((undici) => {
      const common = { keepAliveTimeout: 30_000, headersTimeout: 120_000, bodyTimeout: 120_000 };
      return {
        request: undici.request,
        agent: new undici.Agent(common),
        unverifiedAgent: new undici.Agent({ ...common, connect: { rejectUnauthorized: false } }),
      };
    });
    return this.http;
  }

  async close(): Promise<void> {
    if (this.http === undefined) return;
    const http = await this.http;
    await Promise.all([http.agent.close(), http.unverifiedAgent.close()]);
  }

  /** Docker's rule: loopback registries and the ones named insecure may use plain HTTP. */
  isInsecure(registry: string): boolean {
    const lower = registry.toLowerCase();
    const host = lower.startsWith('[') ? lower.slice(0, lower.indexOf(']') + 1) : lower.replace(/:\d+$/, '');
    return isLoopbackRegistry(registry) || this.insecure.has(lower) || this.insecure.has(host);
  }

  /** How many token requests went to the registry's token service (for tests and `--debug`). */
  async tokenRequestCount(registry: string): Promise<number> {
    const session = this.sessions.get(registry);
    return session === undefined ? 0 : (await session).tokenRequests;
  }

  private session(registry: string, what: string, signal: AbortSignal | undefined): Promise<Session> {
    let session = this.sessions.get(registry);
    if (session === undefined) {
      session = this.ping(registry, what, signal);
      this.sessions.set(registry, session);
      // A failed ping is not cached: the next call tries again.
      session.catch(() => this.sessions.delete(registry));
    }
    return session;
  }

  /**
   * `GET /v2/` finds the scheme and the auth challenge. For an insecure registry HTTPS is tried
   * first without verification, then plain HTTP (Docker's order).
   */
  private async ping(registry: string, what: string, signal: AbortSignal | undefined): Promise<Session> {
    const host = apiHost(registry);
    const schemes = this.isInsecure(registry) ? ['https', 'http'] : ['https'];
    let lastError: unknown;
    for (const scheme of schemes) {
      const base = new URL(`${scheme}://${host}/`);
      const secure = scheme === 'https';
      try {
        const response = await this.sendWithRetry(
          {
            url: new URL('/v2/', base),
            method: 'GET',
            headers: {},
            body: undefined,
            skipTlsVerify: secure && this.isInsecure(registry),
            what: `${what}: contacting registry ${registry}`,
            signal,
          },
          // A TLS handshake against a plain-HTTP port fails at once: don't retry it.
          secure && schemes.length > 1 ? 1 : this.retry.attempts,
        );
        await response.body.dump();
        const challenge =
          response.status === 401 ? parseChallenges(response.headers['www-authenticate'])[0] : undefined;
        return {
          base,
          secure,
          challenge,
          credential: undefined,
          credentialLoaded: false,
          tokens: [],
          pendingTokens: new Map(),
          tokenRequests: 0,
        };
      } catch (error) {
        lastError = error;
        if (isStratumError(error) && error.code === 'ABORTED') throw error;
      }
    }
    if (isStratumError(lastError)) throw lastError;
    throw networkError(`${what}: contacting registry ${registry}`, lastError);
  }

  private async credentialFor(session: Session, registry: string): Promise<Credential | undefined> {
    if (!session.credentialLoaded) {
      session.credential = this.options.credential
        ? await this.options.credential(registry)
        : await resolveCredential(registry, this.options);
      session.credentialLoaded = true;
    }
    return session.credential;
  }

  /** Insecure registries reached over TLS do not have their certificate checked. */
  private skipTlsVerifyFor(session: Session, registry: string): boolean {
    return session.secure && this.isInsecure(registry);
  }

  /** The Authorization header for a request to the registry itself, fetching a token if needed. */
  private async authorization(
    session: Session,
    registry: string,
    scopes: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
    forceNew = false,
  ): Promise<string | undefined> {
    const challenge = session.challenge;
    if (challenge === undefined) return undefined;
    const credential = await this.credentialFor(session, registry);
    if (challenge.kind === 'basic') {
      if (credential === undefined) return undefined;
      if (credential.kind !== 'basic') {
        throw new StratumError(
          'AUTH',
          `${what}: registry ${registry} wants a password, but the stored credential is an identity token`,
        );
      }
      const header = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
      registerSecret(header.slice('Basic '.length));
      return header;
    }
    const wanted = mergeScopes(scopes);
    const now = Date.now();
    if (!forceNew) {
      const cached = session.tokens.find(
        (token) => token.expiresAt > now && scopesCover(token.scopes, wanted),
      );
      if (cached !== undefined) return `Bearer ${cached.value}`;
    }
    const key = wanted.join(' ');
    let pending = forceNew ? undefined : session.pendingTokens.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(session, registry, challenge, credential, wanted, what, signal);
      session.pendingTokens.set(key, pending);
      pending
        .finally(() => {
          if (session.pendingTokens.get(key) === pending) session.pendingTokens.delete(key);
        })
        .catch(() => undefined);
    }
    const token = await pending;
    if (session.tokens.includes(token)) return `Bearer ${token.value}`;
    // Drop expired tokens so the cache stays small.
    for (let i = session.tokens.length - 1; i >= 0; i--) {
      if (session.tokens[i]!.expiresAt <= now) session.tokens.splice(i, 1);
    }
    session.tokens.push(token);
    return `Bearer ${token.value}`;
  }

  /** The token flow of the distribution spec (`docs/spec/auth/token.md`, and `oauth.md` for identity tokens). */
  private async fetchToken(
    session: Session,
    registry: string,
    challenge: Extract<Challenge, { kind: 'bearer' }>,
    credential: Credential | undefined,
    scopes: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Token> {
    let realm: URL;
    try {
      realm = new URL(challenge.realm);
    } catch {
      throw new StratumError('AUTH', `${what}: registry ${registry} sent an invalid token realm`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new StratumError('AUTH', `${what}: registry ${registry} sent a token realm that is not HTTP(S)`);
    }
    const headers: Record<string, string> = {};
    let method: HttpMethod = 'GET';
    let body: Buffer | undefined;
    if (credential?.kind === 'identity-token') {
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credential.token,
        client_id: 'stratum',
      });
      if (challenge.service !== undefined) form.set('service', challenge.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (challenge.service !== undefined) realm.searchParams.set('service', challenge.service);
      for (const scope of scopes) realm.searchParams.append('scope', scope);
      if (credential?.kind === 'basic') {
        const encoded = Buffer.from(`${credential.username}:${credential.password}`).toString('base64');
        registerSecret(encoded);
        headers['authorization'] = `Basic ${encoded}`;
      }
    }
    session.tokenRequests++;
    const { response, text } = await this.sendAndReadText(
      {
        url: realm,
        method,
        headers,
        body,
        skipTlsVerify: this.isInsecure(realm.host),
        what: `${what}: token service`,
        signal,
      },
      MAX_ERROR_BODY,
    );
    if (response.status !== 200) {
      if (response.status === 401 || response.status === 403) {
        const base = httpError(`${what}: token service of ${registry} refused`, response.status, text);
        throw new StratumError(
          'AUTH',
          `${base.message}${credential === undefined ? ' (no credentials for this registry: run stratum login)' : ''}`,
        );
      }
      throw httpError(`${what}: token service of ${registry}`, response.status, text);
    }
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new StratumError(
        'AUTH',
        `${what}: token service of ${registry} answered with something that is not JSON`,
      );
    }
    const value =
      typeof parsed['token'] === 'string' && parsed['token'] !== ''
        ? parsed['token']
        : typeof parsed['access_token'] === 'string'
          ? parsed['access_token']
          : undefined;
    if (value === undefined || value === '') {
      throw new StratumError('AUTH', `${what}: token service of ${registry} returned no token`);
    }
    registerSecret(value);
    if (typeof parsed['refresh_token'] === 'string') registerSecret(parsed['refresh_token']);
    // The spec's minimum lifetime is 60 s; keep a margin so a token does not expire in flight.
    const expiresIn =
      typeof parsed['expires_in'] === 'number' && parsed['expires_in'] > 0 ? parsed['expires_in'] : 60;
    const issuedAt =
      typeof parsed['issued_at'] === 'string' && !Number.isNaN(Date.parse(parsed['issued_at']))
        ? Math.min(Date.parse(parsed['issued_at']), Date.now())
        : Date.now();
    return { scopes, value, expiresAt: issuedAt + Math.max(expiresIn - 10, expiresIn / 2) * 1000 };
  }

  /**
   * Checks the credential the way `docker login` does: `GET /v2/` with Basic auth, or a token
   * request without scope for a Bearer registry. An open registry accepts anything.
   */
  async verifyLogin(registry: string, what: string, signal?: AbortSignal): Promise<void> {
    const session = await this.session(registry, what, signal);
    if (session.challenge?.kind === 'bearer') {
      await this.authorization(session, registry, [], what, signal, true);
      return;
    }
    const response = await this.request({
      registry,
      method: 'GET',
      path: '/v2/',
      scopes: [],
      what,
      expect: [200],
      signal,
    });
    await response.body.dump();
  }

  /**
   * Sends one registry request with auth, redirects and retries. A stream body is never re-sent:
   * a failure with one is thrown for the caller to resume or restart.
   */
  async request(req: RegistryRequest): Promise<RegistryResponse> {
    const session = await this.session(req.registry, req.what, req.signal);
    const url = req.path.startsWith('/') ? new URL(req.path, session.base) : new URL(req.path);
    const replayable = req.body === undefined || Buffer.isBuffer(req.body);
    let scopes = [...req.scopes];
    let authRetried = false;
    for (;;) {
      const authorization = await this.authorization(session, req.registry, scopes, req.what, req.signal);
      const headers: Record<string, string> = { ...req.headers };
      if (this.options.userAgent !== undefined) headers['user-agent'] = this.options.userAgent;
      const response = await this.sendWithRetry(
        {
          url,
          method: req.method,
          headers,
          body: req.body,
          skipTlsVerify: this.skipTlsVerifyFor(session, req.registry),
          what: req.what,
          signal: req.signal,
          authorization,
          authOrigin: session.base.origin,
        },
        replayable ? this.retry.attempts : 1,
        req.expect,
      );
      if (response.status === 401 && !authRetried && replayable) {
        const challenge = parseChallenges(response.headers['www-authenticate'])[0];
        // First contact after an anonymous ping, a scope the token lacks, or an expired token.
        if (challenge !== undefined) {
          authRetried = true;
          const text = await readText(response.body, MAX_ERROR_BODY);
          session.challenge = challenge;
          if (challenge.kind === 'bearer' && challenge.scope !== undefined)
            scopes = mergeScopes([...scopes, challenge.scope]);
          if (challenge.kind === 'bearer') {
            session.tokens.length = 0;
            await this.authorization(session, req.registry, scopes, req.what, req.signal, true);
          } else if ((await this.credentialFor(session, req.registry)) === undefined) {
            const base = httpError(req.what, response.status, text);
            throw new StratumError(
              'AUTH',
              `${base.message} (no credentials for ${req.registry}: run stratum login ${req.registry})`,
            );
          }
          continue;
        }
      }
      if (req.expect.includes(response.status)) return response;
      const text = await readText(response.body, MAX_ERROR_BODY);
      throw httpError(req.what, response.status, text);
    }
  }

  /**
   * A request whose whole (small) body is wanted: manifests, tag lists. A body reset or cut
   * short while being read is retried like a failed request, within the same policy.
   */
  async requestBytes(
    req: RegistryRequest,
    limit: number,
  ): Promise<{ readonly response: RegistryResponse; readonly bytes: Buffer }> {
    for (let attempt = 1; ; attempt++) {
      const response = await this.request(req);
      try {
        return { response, bytes: await this.readBody(response, limit, req.what) };
      } catch (error) {
        if (isAborted(req.signal)) throw new StratumError('ABORTED', `${req.what}: aborted`);
        if (isStratumError(error)) throw error;
        if (attempt < this.retry.attempts && isRetryableNetworkError(error)) {
          await this.backoff(attempt, undefined, req.signal);
          continue;
        }
        throw networkError(req.what, error);
      }
    }
  }

  private async readBody(response: RegistryResponse, limit: number, what: string): Promise<Buffer> {
    return readWholeBody(
      response.body,
      headerValue(response.headers, 'content-length'),
      limit,
      () => new StratumError('REGISTRY', `${what}: response larger than ${limit} bytes`),
    );
  }

  /** sendWithRetry, and the body read within the same retry bound (the token service's answer). */
  private async sendAndReadText(
    send: OutgoingRequest,
    limit: number,
  ): Promise<{ readonly response: RegistryResponse; readonly text: string }> {
    for (let attempt = 1; ; attempt++) {
      const response = await this.sendWithRetry(send, this.retry.attempts);
      try {
        return { response, text: (await this.readBody(response, limit, send.what)).toString('utf8') };
      } catch (error) {
        if (isAborted(send.signal)) throw new StratumError('ABORTED', `${send.what}: aborted`);
        if (isStratumError(error)) throw error;
        if (attempt < this.retry.attempts && isRetryableNetworkError(error)) {
          await this.backoff(attempt, undefined, send.signal);
          continue;
        }
        throw networkError(send.what, error);
      }
    }
  }

  /** One logical request: redirects by hand, retries for 408/429/5xx and resets when the body allows it. */
  private async sendWithRetry(
    send: OutgoingRequest,
    attempts: number,
    expect: readonly number[] = [],
  ): Promise<RegistryResponse> {
    for (let attempt = 1; ; attempt++) {
      if (send.signal?.aborted === true) throw new StratumError('ABORTED', `${send.what}: aborted`);
      let response: RegistryResponse;
      try {
        response = await this.sendFollowingRedirects(send);
      } catch (error) {
        if (isAborted(send.signal)) throw new StratumError('ABORTED', `${send.what}: aborted`);
        if (isStratumError(error)) throw error;
        if (attempt < attempts && isRetryableNetworkError(error)) {
          await this.backoff(attempt, undefined, send.signal);
          continue;
        }
        throw networkError(send.what, error);
      }
      if (RETRYABLE_STATUS.has(response.status) && !expect.includes(response.status) && attempt < attempts) {
        const retryAfter = parseRetryAfter(response.headers['retry-after']);
        await response.body.dump().catch(() => undefined);
        await this.backoff(attempt, retryAfter, send.signal);
        continue;
      }
      return response;
    }
  }

  private async backoff(
    attempt: number,
    retryAfterMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const delay = retryDelay(this.retry, attempt, retryAfterMs);
    try {
      await sleep(delay, undefined, signal ? { signal } : {});
    } catch {
      throw new StratumError('ABORTED', 'aborted');
    }
  }

  private async sendFollowingRedirects(send: OutgoingRequest): Promise<RegistryResponse> {
    let url = send.url;
    let method = send.method;
    let body = send.body;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...send.headers };
      // Credentials go only to the origin they were issued for (a blob redirect to storage must not carry them).
      if (send.authorization !== undefined && url.origin === (send.authOrigin ?? send.url.origin)) {
        headers['authorization'] = send.authorization;
      }
      if (body === undefined && (method === 'PUT' || method === 'POST' || method === 'PATCH'))
        headers['content-length'] ??= '0';
      const http = await this.loadHttp();
      // A redirect to another origin (blob storage) is verified whatever the registry's setting.
      const skipVerify = send.skipTlsVerify && (url.protocol === 'http:' || url.origin === send.url.origin);
      const dispatcher = skipVerify ? http.unverifiedAgent : http.agent;
      const response = await http.request(url, {
        method,
        headers,
        body: body ?? null,
        dispatcher,
        signal: send.signal ?? null,
        highWaterMark: 1024 * 1024,
      });
      const location = response.headers['location'];
      if (
        response.statusCode >= 300 &&
        response.statusCode < 400 &&
        response.statusCode !== 304 &&
        typeof location === 'string'
      ) {
        await response.body.dump();
        if (hop >= MAX_REDIRECTS) throw new StratumError('REGISTRY', `${send.what}: too many redirects`);
        const next = new URL(location, url);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') {
          throw new StratumError('REGISTRY', `${send.what}: redirect to a non-HTTP location`);
        }
        if (url.protocol === 'https:' && next.protocol === 'http:' && url.hostname !== next.hostname) {
          throw new StratumError(
            'REGISTRY',
            `${send.what}: refusing a redirect from HTTPS to plain HTTP on another host`,
          );
        }
        if (
          response.statusCode === 303 ||
          ((response.statusCode === 301 || response.statusCode === 302) && method === 'POST')
        ) {
          method = 'GET';
          body = undefined;
        } else if (body !== undefined && !Buffer.isBuffer(body)) {
          throw new StratumError(
            'REGISTRY',
            `${send.what}: registry redirected a streamed upload (not supported)`,
          );
        }
        url = next;
        continue;
      }
      return { status: response.statusCode, headers: response.headers, body: response.body, url };
    }
  }
}

/** Read through a function so the compiler does not narrow `aborted` across an await. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Reads at most `limit` bytes of a body as text, discarding the rest. */
export async function readText(body: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    if (size < limit) chunks.push(buffer.subarray(0, limit - size));
    size += buffer.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function headerValue(headers: RegistryResponse['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
