import { createHash } from 'node:crypto';
import { StratumError } from '../errors.js';
import { digestAlgorithm, isDigest } from './digest.js';
import { isIndexMediaType, isManifestMediaType } from './media-types.js';
import type { Digest, ImageConfig, ImageIndex, ImageManifest, Raw } from './types.js';
import { descriptorProblems, indexProblems, manifestProblems } from './validate.js';

/**
 * Bytes → Raw<T>: parse, check the shape stratum relies on, keep the exact bytes and their
 * digest. `what` names where the bytes came from (`oci:/path blob sha256:…`) and starts every
 * error message, so a bad document is reported as one line naming its file and digest.
 *
 * These checks are the schema's (validate.ts) with one deliberate leniency: a manifest with no
 * layers is accepted, since manifest.md only says layers SHOULD be non-empty and BuildKit writes
 * `FROM scratch` images that have none.
 */

function fail(what: string, problems: readonly string[]): never {
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  throw new StratumError('INVALID_IMAGE', `${what}: ${problems[0] ?? 'invalid'}${more}`);
}

export function parseJson(raw: Buffer, what: string): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (error) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${what}: not valid JSON (${error instanceof Error ? error.message : String(error)})`,
    );
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The digest of `raw` in the algorithm of `like` (sha256 unless told otherwise). */
export function digestOf(raw: Buffer, like?: Digest): Digest {
  const algorithm = like ? digestAlgorithm(like) : 'sha256';
  return `${algorithm}:${createHash(algorithm).update(raw).digest('hex')}`;
}

function raw<T>(value: T, bytes: Buffer, expected: Digest | undefined, what: string): Raw<T> {
  const digest = digestOf(bytes, expected);
  if (expected !== undefined && digest !== expected) {
    throw new StratumError('DIGEST_MISMATCH', `${what}: content is ${digest}, expected ${expected}`);
  }
  return { value, raw: bytes, digest };
}

/** Whether a parsed document is an index (by mediaType, else by having `manifests`). */
export function looksLikeIndex(value: unknown): boolean {
  if (!isRecord(value)) return false;
  const mediaType = value['mediaType'];
  if (typeof mediaType === 'string') return isIndexMediaType(mediaType);
  return Array.isArray(value['manifests']) && value['config'] === undefined;
}

export function parseManifest(bytes: Buffer, what: string, expected?: Digest): Raw<ImageManifest> {
  const value = parseJson(bytes, what);
  if (looksLikeIndex(value)) fail(what, ['is an image index, expected a manifest']);
  const problems = manifestProblems(value, '$', { allowEmptyLayers: true });
  if (problems.length > 0) fail(what, problems);
  const mediaType = (value as Record<string, unknown>)['mediaType'];
  if (typeof mediaType === 'string' && !isManifestMediaType(mediaType)) {
    fail(what, [`unsupported manifest media type ${mediaType}`]);
  }
  return raw(value as ImageManifest, bytes, expected, what);
}

export function parseIndex(bytes: Buffer, what: string, expected?: Digest): Raw<ImageIndex> {
  const value = parseJson(bytes, what);
  const problems = indexProblems(value);
  if (problems.length > 0) fail(what, problems);
  const mediaType = (value as Record<string, unknown>)['mediaType'];
  if (typeof mediaType === 'string' && !isIndexMediaType(mediaType)) {
    fail(what, [`unsupported index media type ${mediaType}`]);
  }
  // Index entries are descriptors stratum will open: hold them to descriptor rules (size >= 0).
  const entryProblems = (value as ImageIndex).manifests.flatMap((entry, index) =>
    descriptorProblems(entry, `$.manifests[${index}]`),
  );
  if (entryProblems.length > 0) fail(what, entryProblems);
  return raw(value as ImageIndex, bytes, expected, what);
}

/** Parses either kind, telling which it was. */
export function parseManifestOrIndex(
  bytes: Buffer,
  what: string,
  expected?: Digest,
):
  | { readonly kind: 'index'; readonly index: Raw<ImageIndex> }
  | { readonly kind: 'manifest'; readonly manifest: Raw<ImageManifest> } {
  const value = parseJson(bytes, what);
  return looksLikeIndex(value)
    ? { kind: 'index', index: parseIndex(bytes, what, expected) }
    : { kind: 'manifest', manifest: parseManifest(bytes, what, expected) };
}

/**
 * An image config. Only what stratum depends on is enforced (os, architecture, rootfs with
 * digest diff_ids, history entries as objects); Docker's extra fields (container_config,
 * docker_version, …) are kept in `raw` and ignored.
 */
export function parseConfig(bytes: Buffer, what: string, expected?: Digest): Raw<ImageConfig> {
  const value = parseJson(bytes, what);
  const problems: string[] = [];
  if (!isRecord(value)) fail(what, ['expected a JSON object']);
  for (const field of ['architecture', 'os']) {
    if (typeof value[field] !== 'string') problems.push(`$.${field}: missing or not a string`);
  }
  const rootfs = value['rootfs'];
  if (!isRecord(rootfs)) problems.push('$.rootfs: missing or not an object');
  else {
    if (rootfs['type'] !== 'layers') problems.push('$.rootfs.type: must be "layers"');
    const diffIds = rootfs['diff_ids'];
    if (!Array.isArray(diffIds)) problems.push('$.rootfs.diff_ids: missing or not an array');
    else {
      diffIds.forEach((id: unknown, index) => {
        if (typeof id !== 'string' || !isDigest(id))
          problems.push(`$.rootfs.diff_ids[${index}]: not a sha256 digest`);
      });
    }
  }
  const history = value['history'];
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history)) problems.push('$.history: not an array');
    else if (!history.every(isRecord)) problems.push('$.history: entries must be objects');
  }
  const config = value['config'];
  if (config !== undefined && config !== null && !isRecord(config)) problems.push('$.config: not an object');
  if (problems.length > 0) fail(what, problems);
  return raw(value as unknown as ImageConfig, bytes, expected, what);
}
