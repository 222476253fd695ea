import type { Readable } from 'node:stream';
import { StratumError, isStratumError } from '../errors.js';
import { Authenticator, newAuthState, type AuthState } from './auth.js';
import { mergeScopes, parseChallenges } from './challenge.js';
import { RegistryContext } from './context.js';
import { resolveCredential, type AuthFileOptions, type Credential } from './credentials.js';
import {
  headerValue,
  loadHttp,
  readText,
  type Http,
  type HttpMethod,
  type OutgoingRequest,
  type RegistryResponse,
} from './http.js';
import { sendFollowingRedirects } from './redirects.js';
import { apiHost, isLoopbackRegistry } from './reference.js';
import { httpError, networkError } from './registry-error.js';
import {
  DEFAULT_RETRY,
  isRetryableNetworkError,
  sendAndReadWithRetry,
  sendWithRetry,
  type RetryPolicy,
} from './retry.js';

export { DEFAULT_RETRY, isRetryableNetworkError, type RetryPolicy };
export { headerValue, readText, type HttpMethod, type RegistryResponse };

/**
 * The HTTP side of the distribution API, as layers: a session per registry host (scheme found by
 * a ping, auth state), then auth (auth.ts), retry (retry.ts) and redirects (redirects.ts) around
 * every request. Its state (sessions, tokens, secrets to redact, blob locations) belongs to the
 * instance and its RegistryContext, not to the process.
 */

export interface RegistryClientOptions extends AuthFileOptions {
  /** Hosts (`host` or `host:port`) reached over plain HTTP, or HTTPS without verification. */
  readonly insecureRegistries?: readonly string[];
  /** Overrides the Docker config lookup (used by `login` to check a credential before saving it). */
  readonly credential?: (registry: string) => Promise<Credential | undefined>;
  readonly retry?: Partial<RetryPolicy>;
  readonly userAgent?: string;
  /** Shared with the other clients of one build (blob locations for mounts, secrets); default: its own. */
  readonly context?: RegistryContext;
}

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

interface Session {
  readonly base: URL;
  readonly secure: boolean;
  readonly auth: AuthState;
  credential: Promise<Credential | undefined> | undefined;
}

const MAX_ERROR_BODY = 64 * 1024;

export class RegistryClient {
  private http: Promise<Http> | undefined;
  private readonly sessions = new Map<string, Promise<Session>>();
  readonly retry: RetryPolicy;
  readonly context: RegistryContext;
  private readonly insecure: ReadonlySet<string>;
  private readonly auth: Authenticator;

  constructor(readonly options: RegistryClientOptions = {}) {
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.context = options.context ?? new RegistryContext();
    this.insecure = new Set((options.insecureRegistries ?? []).map((host) => host.toLowerCase()));
    this.auth = new Authenticator({
      secrets: this.context.secrets,
      credential: (registry) => this.credentialFor(registry),
      sendAndRead: (send, limit) =>
        sendAndReadWithRetry(this.retry, () => this.send(send, this.retry.attempts, []), limit, {
          what: send.what,
          signal: send.signal,
          secrets: this.context.secrets,
        }),
      isInsecure: (host) => this.isInsecure(host),
    });
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
    return session === undefined ? 0 : (await session).auth.tokenRequests;
  }

  /** Records that `repository` holds `digest` (a mount candidate for later pushes in the context). */
  rememberBlob(registry: string, repository: string, digest: string): void {
    this.context.blobs.remember(registry, repository, digest);
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
        const response = await this.send(
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
          [],
        );
        await response.body.dump();
        const challenge =
          response.status === 401 ? parseChallenges(response.headers['www-authenticate'])[0] : undefined;
        return { base, secure, auth: newAuthState(challenge), credential: undefined };
      } catch (error) {
        lastError = error;
        if (isStratumError(error) && error.code === 'ABORTED') throw error;
      }
    }
    if (isStratumError(lastError)) throw lastError;
    throw networkError(`${what}: contacting registry ${registry}`, lastError, this.context.secrets);
  }

  /** The stored credential, looked up once per registry; its secrets are redacted from then on. */
  private async credentialFor(registry: string): Promise<Credential | undefined> {
    const session = await this.sessions.get(registry);
    if (session === undefined) return this.lookUpCredential(registry);
    session.credential ??= this.lookUpCredential(registry);
    return session.credential;
  }

  private async lookUpCredential(registry: string): Promise<Credential | undefined> {
    const credential = this.options.credential
      ? await this.options.credential(registry)
      : await resolveCredential(registry, this.options);
    if (credential?.kind === 'basic') this.context.secrets.register(credential.password);
    if (credential?.kind === 'identity-token') this.context.secrets.register(credential.token);
    return credential;
  }

  /**
   * Checks the credential the way `docker login` does: `GET /v2/` with Basic auth, or a token
   * request without scope for a Bearer registry. An open registry accepts anything.
   */
  async verifyLogin(registry: string, what: string, signal?: AbortSignal): Promise<void> {
    const session = await this.session(registry, what, signal);
    if (session.auth.challenge?.kind === 'bearer') {
      await this.auth.authorization(session.auth, registry, [], what, signal, true);
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
    const secrets = this.context.secrets;
    let scopes = [...req.scopes];
    let authRetried = false;
    for (;;) {
      const authorization = await this.auth.authorization(
        session.auth,
        req.registry,
        scopes,
        req.what,
        req.signal,
      );
      const headers: Record<string, string> = { ...req.headers };
      if (this.options.userAgent !== undefined) headers['user-agent'] = this.options.userAgent;
      const response = await this.send(
        {
          url,
          method: req.method,
          headers,
          body: req.body,
          skipTlsVerify: session.secure && this.isInsecure(req.registry),
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
          session.auth.challenge = challenge;
          if (challenge.kind === 'bearer' && challenge.scope !== undefined)
            scopes = mergeScopes([...scopes, challenge.scope]);
          if (challenge.kind === 'bearer') {
            session.auth.tokens.length = 0;
            await this.auth.authorization(session.auth, req.registry, scopes, req.what, req.signal, true);
          } else if ((await this.credentialFor(req.registry)) === undefined) {
            const base = httpError(req.what, response.status, text, secrets);
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
      throw httpError(req.what, response.status, text, secrets);
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
    return sendAndReadWithRetry(this.retry, () => this.request(req), limit, {
      what: req.what,
      signal: req.signal,
      secrets: this.context.secrets,
    });
  }

  /** The retry layer around the redirect layer around one HTTP exchange. */
  private send(
    send: OutgoingRequest,
    attempts: number,
    expect: readonly number[],
  ): Promise<RegistryResponse> {
    return sendWithRetry(
      this.retry,
      async () => {
        this.http ??= loadHttp();
        return sendFollowingRedirects(await this.http, send);
      },
      { attempts, expect, what: send.what, signal: send.signal, secrets: this.context.secrets },
    );
  }
}
