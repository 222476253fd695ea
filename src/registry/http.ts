import type { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import { handedOverTrust } from '../util/extra-ca-certs.js';

/**
 * The HTTP vocabulary the registry client's layers share (auth, retry, redirects): one request
 * as sent on the wire, one response, and the lazily loaded undici agents.
 */

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

export interface RegistryResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
  readonly url: URL;
}

/** One request as the retry and redirect layers see it. */
export interface OutgoingRequest {
  readonly url: URL;
  readonly method: HttpMethod;
  readonly headers: Record<string, string>;
  readonly body: Buffer | Readable | undefined;
  readonly skipTlsVerify: boolean;
  readonly what: string;
  readonly signal: AbortSignal | undefined;
  /** Sent only to `authOrigin` (default the request's own origin). */
  readonly authorization?: string | undefined;
  readonly authOrigin?: string;
}

export interface Http {
  readonly request: typeof import('undici').request;
  readonly agent: Agent;
  readonly unverifiedAgent: Agent;
}

/**
 * undici is loaded on the first request, not at start-up: a build that never talks to a
 * registry should not pay for loading an HTTP client (about 0.15 s).
 */
export async function loadHttp(): Promise<Http> {
  const undici = await import('undici');
  const common = { keepAliveTimeout: 30_000, headersTimeout: 120_000, bodyTimeout: 120_000 };
  // NODE_EXTRA_CA_CERTS as stratum's re-start in a user namespace was handed it (extra-ca-certs.ts).
  const trust = await handedOverTrust();
  return {
    request: undici.request,
    agent: new undici.Agent(trust === undefined ? common : { ...common, connect: { ca: [...trust.ca] } }),
    unverifiedAgent: new undici.Agent({ ...common, connect: { rejectUnauthorized: false } }),
  };
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
