import { StratumError } from '../errors.js';
import { mergeScopes, scopesCover, type Challenge } from './challenge.js';
import type { Credential } from './credentials.js';
import type { HttpMethod, OutgoingRequest, RegistryResponse } from './http.js';
import { httpError, type Secrets } from './registry-error.js';

/**
 * Auth: the Authorization header for a request to a registry. Basic from the stored credential,
 * or a Bearer token from the token service the challenge names (`docs/spec/auth/token.md`, and
 * `oauth.md` for identity tokens), cached per scope set until shortly before it expires, one
 * request shared by parallel callers.
 */

interface Token {
  readonly scopes: readonly string[];
  readonly value: string;
  readonly expiresAt: number;
}

/** What one registry host asked for and what it handed out. */
export interface AuthState {
  challenge: Challenge | undefined;
  readonly tokens: Token[];
  /** Token requests under way, by scope list: parallel requests share one. */
  readonly pendingTokens: Map<string, Promise<Token>>;
  /** Token requests made: tests check tokens are reused. */
  tokenRequests: number;
}

export function newAuthState(challenge: Challenge | undefined): AuthState {
  return { challenge, tokens: [], pendingTokens: new Map(), tokenRequests: 0 };
}

export interface AuthDeps {
  readonly secrets: Secrets;
  /** The stored credential for a registry (loaded once per registry by the caller). */
  readonly credential: (registry: string) => Promise<Credential | undefined>;
  /** Sends a request to the token service and reads its (small) answer, through the retry layer. */
  readonly sendAndRead: (
    send: OutgoingRequest,
    limit: number,
  ) => Promise<{ readonly response: RegistryResponse; readonly bytes: Buffer }>;
  readonly isInsecure: (host: string) => boolean;
}

const MAX_TOKEN_BODY = 64 * 1024;

export class Authenticator {
  constructor(private readonly deps: AuthDeps) {}

  /** The Authorization header for a request to the registry itself, fetching a token if needed. */
  async authorization(
    state: AuthState,
    registry: string,
    scopes: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
    forceNew = false,
  ): Promise<string | undefined> {
    const challenge = state.challenge;
    if (challenge === undefined) return undefined;
    const credential = await this.deps.credential(registry);
    if (challenge.kind === 'basic') {
      if (credential === undefined) return undefined;
      if (credential.kind !== 'basic') {
        throw new StratumError(
          'AUTH',
          `${what}: registry ${registry} wants a password, but the stored credential is an identity token`,
        );
      }
      const encoded = Buffer.from(`${credential.username}:${credential.password}`).toString('base64');
      this.deps.secrets.register(encoded);
      return `Basic ${encoded}`;
    }
    const wanted = mergeScopes(scopes);
    const now = Date.now();
    if (!forceNew) {
      const cached = state.tokens.find((token) => token.expiresAt > now && scopesCover(token.scopes, wanted));
      if (cached !== undefined) return `Bearer ${cached.value}`;
    }
    const key = wanted.join(' ');
    let pending = forceNew ? undefined : state.pendingTokens.get(key);
    if (pending === undefined) {
      pending = this.fetchToken(state, registry, challenge, credential, wanted, what, signal);
      state.pendingTokens.set(key, pending);
      pending
        .finally(() => {
          if (state.pendingTokens.get(key) === pending) state.pendingTokens.delete(key);
        })
        .catch(() => undefined);
    }
    const token = await pending;
    if (state.tokens.includes(token)) return `Bearer ${token.value}`;
    // Drop expired tokens so the cache stays small.
    for (let i = state.tokens.length - 1; i >= 0; i--) {
      if (state.tokens[i]!.expiresAt <= now) state.tokens.splice(i, 1);
    }
    state.tokens.push(token);
    return `Bearer ${token.value}`;
  }

  private async fetchToken(
    state: AuthState,
    registry: string,
    challenge: Extract<Challenge, { kind: 'bearer' }>,
    credential: Credential | undefined,
    scopes: readonly string[],
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Token> {
    const secrets = this.deps.secrets;
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
        secrets.register(encoded);
        headers['authorization'] = `Basic ${encoded}`;
      }
    }
    state.tokenRequests++;
    const { response, bytes } = await this.deps.sendAndRead(
      {
        url: realm,
        method,
        headers,
        body,
        skipTlsVerify: this.deps.isInsecure(realm.host),
        what: `${what}: token service`,
        signal,
      },
      MAX_TOKEN_BODY,
    );
    const text = bytes.toString('utf8');
    if (response.status !== 200) {
      if (response.status === 401 || response.status === 403) {
        const base = httpError(
          `${what}: token service of ${registry} refused`,
          response.status,
          text,
          secrets,
        );
        throw new StratumError(
          'AUTH',
          `${base.message}${credential === undefined ? ' (no credentials for this registry: run stratum login)' : ''}`,
        );
      }
      throw httpError(`${what}: token service of ${registry}`, response.status, text, secrets);
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
    secrets.register(value);
    if (typeof parsed['refresh_token'] === 'string') secrets.register(parsed['refresh_token']);
    // The spec's minimum lifetime is 60 s; keep a margin so a token does not expire in flight.
    const expiresIn =
      typeof parsed['expires_in'] === 'number' && parsed['expires_in'] > 0 ? parsed['expires_in'] : 60;
    const issuedAt =
      typeof parsed['issued_at'] === 'string' && !Number.isNaN(Date.parse(parsed['issued_at']))
        ? Math.min(Date.parse(parsed['issued_at']), Date.now())
        : Date.now();
    return { scopes, value, expiresAt: issuedAt + Math.max(expiresIn - 10, expiresIn / 2) * 1000 };
  }
}
