import { StratumError } from '../errors.js';
import type { Http, OutgoingRequest, RegistryResponse } from './http.js';

/**
 * Redirects, followed by hand so that credentials stay with their origin: the Authorization
 * header goes only to the origin it was issued for (a blob redirect to storage gets none), an
 * HTTPS → HTTP redirect to another host is refused, and a streamed body is never replayed.
 */

const MAX_REDIRECTS = 5;

export async function sendFollowingRedirects(http: Http, send: OutgoingRequest): Promise<RegistryResponse> {
  let url = send.url;
  let method = send.method;
  let body = send.body;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { ...send.headers };
    if (send.authorization !== undefined && url.origin === (send.authOrigin ?? send.url.origin)) {
      headers['authorization'] = send.authorization;
    }
    if (body === undefined && (method === 'PUT' || method === 'POST' || method === 'PATCH'))
      headers['content-length'] ??= '0';
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
