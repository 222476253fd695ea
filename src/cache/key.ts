import { createHash } from 'node:crypto';
import type { Digest } from '../oci/types.js';

/**
 * A cache key: a sha256 over named, length-framed components, so that no two different inputs
 * can run together (kaniko joined its parts with `-` and collided). The components are kept
 * in plain words beside the digest so `--explain` can show them and compare them with the last
 * build of the same step.
 */
export interface KeyComponent {
  /** A short stable name: `parent`, `platform`, `instruction`, `env FOO`, `file src/app.js`. */
  readonly name: string;
  /** What the component was, in words a person can read (may be a digest for large inputs). */
  readonly value: string;
}

export interface CacheKey {
  readonly digest: Digest;
  readonly components: readonly KeyComponent[];
}

/**
 * The layer compression (oci/compression.ts compressionName) as key components: a step's
 * entry names its compressed blob, so a zstd build must not hit a gzip entry. None for the
 * default, gzip-6, so that keys made before compression was a choice stay valid.
 */
export function compressionComponents(compression: string): KeyComponent[] {
  return compression === 'gzip-6' ? [] : [{ name: 'compression', value: compression }];
}

export function cacheKey(components: readonly KeyComponent[]): CacheKey {
  const hash = createHash('sha256');
  // v2: BuildKit's rules (a layer for every filesystem step, WORKDIR owned by USER, VOLUME
  // kept in the image); an entry made under the classic rules must not be served.
  hash.update('stratum cache key v2\0');
  for (const component of components) {
    frame(hash, component.name);
    frame(hash, component.value);
  }
  return { digest: `sha256:${hash.digest('hex')}`, components };
}

function frame(hash: ReturnType<typeof createHash>, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(bytes.length));
  hash.update(length);
  hash.update(bytes);
}
