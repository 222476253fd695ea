import { createHash } from 'node:crypto';
import { StratumError } from '../errors.js';
import { digestAlgorithm } from '../oci/digest.js';
import { MediaType, type Digest } from '../oci/types.js';
import { headerValue } from './http.js';
import type { RepositoryScope } from './repository-scope.js';

/**
 * Manifests and tags of one repository: GET (checked against the digest asked for or the one
 * the registry names), HEAD, PUT (checked against the digest the registry confirms), DELETE,
 * and the tag list.
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

function sha256Of(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function digestOf(bytes: Buffer, algorithm: 'sha256' | 'sha512'): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

export class Manifests {
  constructor(private readonly repo: RepositoryScope) {}

  /** GET a manifest or index by tag or digest; the bytes are checked against the digest. */
  async get(
    reference: string,
    options: { readonly accept?: readonly string[]; readonly signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    const what = `${this.repo.refLabel(reference)}: fetching manifest`;
    const { response, bytes } = await this.repo.client.requestBytes(
      {
        registry: this.repo.registry,
        method: 'GET',
        path: `/v2/${this.repo.repository}/manifests/${reference}`,
        headers: { accept: (options.accept ?? MANIFEST_ACCEPT).join(', ') },
        scopes: this.repo.pullScope(),
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
  async head(
    reference: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<{ readonly mediaType: string; readonly digest: Digest; readonly size: number } | undefined> {
    const response = await this.repo.client.request({
      registry: this.repo.registry,
      method: 'HEAD',
      path: `/v2/${this.repo.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: this.repo.pullScope(),
      what: `${this.repo.refLabel(reference)}: checking manifest`,
      expect: [200, 404],
      signal: options.signal,
    });
    await response.body.dump();
    if (response.status === 404) return undefined;
    const digest = headerValue(response.headers, 'docker-content-digest');
    if (digest === undefined) {
      // Without the header only a GET can tell; the spec makes the header a SHOULD.
      const fetched = await this.get(reference, options);
      return { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.size };
    }
    return {
      mediaType: headerValue(response.headers, 'content-type')?.split(';')[0]?.trim() ?? '',
      digest: digest as Digest,
      size: Number(headerValue(response.headers, 'content-length') ?? '0'),
    };
  }

  /** PUT a manifest or index under a tag or its digest; returns the digest the registry confirmed. */
  async put(
    reference: string,
    bytes: Buffer,
    mediaType: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<Digest> {
    const what = `${this.repo.refLabel(reference)}: pushing manifest`;
    const digest = reference.startsWith('sha512:') ? digestOf(bytes, 'sha512') : sha256Of(bytes);
    if (/^[a-z0-9]+:/.test(reference) && reference !== digest) {
      throw new StratumError('DIGEST_MISMATCH', `${what}: manifest bytes are ${digest}, not ${reference}`);
    }
    const response = await this.repo.client.request({
      registry: this.repo.registry,
      method: 'PUT',
      path: `/v2/${this.repo.repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      scopes: this.repo.pushScope(),
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

  async delete(digest: Digest, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const response = await this.repo.client.request({
      registry: this.repo.registry,
      method: 'DELETE',
      path: `/v2/${this.repo.repository}/manifests/${digest}`,
      scopes: [`repository:${this.repo.repository}:delete`],
      what: `${this.repo.refLabel(digest)}: deleting manifest`,
      expect: [202, 200],
      signal: options.signal,
    });
    await response.body.dump();
  }

  async listTags(options: { readonly signal?: AbortSignal } = {}): Promise<string[]> {
    const what = `docker://${this.repo.name}: listing tags`;
    const { bytes } = await this.repo.client.requestBytes(
      {
        registry: this.repo.registry,
        method: 'GET',
        path: `/v2/${this.repo.repository}/tags/list`,
        scopes: this.repo.pullScope(),
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
