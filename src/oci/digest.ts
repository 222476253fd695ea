import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StratumError } from '../errors.js';
import { OffThreadDigest } from './hash-worker.js';
import type { Digest } from './types.js';

const DIGEST_PATTERN = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(value: string): value is Digest {
  return DIGEST_PATTERN.test(value);
}

/** Parses `sha256:<hex>`; anything else is an INVALID_IMAGE error naming the value and where it came from. */
export function parseDigest(value: string, context: string): Digest {
  if (!isDigest(value)) {
    throw new StratumError('INVALID_IMAGE', `${context}: invalid digest "${value}"`);
  }
  return value;
}

export function digestAlgorithm(digest: Digest): 'sha256' | 'sha512' {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}

export function sha256Digest(data: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * A pass-through stream that counts and hashes what flows through it. After it ends, `digest`
 * and `size` describe exactly the bytes that passed. `offThread` hashes on the hashing worker
 * (hash-worker.ts): for big streams, where the main thread has better things to do.
 */
export class DigestingStream extends Transform {
  private readonly hash: Hash | OffThreadDigest;
  private readonly algorithm: 'sha256' | 'sha512';
  private bytes = 0;
  private finalDigest: Digest | undefined;

  constructor(algorithm: 'sha256' | 'sha512' = 'sha256', options: { readonly offThread?: boolean } = {}) {
    super();
    this.algorithm = algorithm;
    this.hash = options.offThread === true ? new OffThreadDigest([algorithm]) : createHash(algorithm);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.hash instanceof OffThreadDigest) {
      const copying = this.hash.update(chunk);
      if (copying === undefined) callback(null, chunk);
      else {
        copying.then(() => {
          callback(null, chunk);
        }, callback);
      }
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.hash instanceof OffThreadDigest) {
      this.hash.results().then(([hex]) => {
        this.finalDigest = `${this.algorithm}:${String(hex)}`;
        callback();
      }, callback);
      return;
    }
    this.finalDigest = `${this.algorithm}:${this.hash.digest('hex')}`;
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A stream destroyed before its end leaves an off-thread digest open: end it.
    if (this.hash instanceof OffThreadDigest) this.hash.abandon();
    callback(error);
  }

  get size(): number {
    return this.bytes;
  }

  get digest(): Digest {
    if (this.finalDigest === undefined) throw new Error('DigestingStream: digest read before end of stream');
    return this.finalDigest;
  }
}

/**
 * A pass-through stream that fails at end of stream unless the bytes match the expected digest
 * and size, and fails as soon as more bytes than expected arrive. Every byte read from a store,
 * an archive or a registry goes through one of these.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private bytes = 0;

  constructor(
    private readonly expected: Digest,
    private readonly expectedSize: number | undefined,
    private readonly what: string,
  ) {
    super();
    this.hash = createHash(digestAlgorithm(expected));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expectedSize !== undefined && this.bytes > this.expectedSize) {
      callback(
        new StratumError(
          'DIGEST_MISMATCH',
          `${this.what}: more than the expected ${this.expectedSize} bytes for ${this.expected}`,
        ),
      );
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(
      mismatch(this.expected, this.expectedSize, this.what, this.bytes, () => this.hash.digest('hex')) ??
        null,
    );
  }
}

/** The error for bytes read whole that are not `expected` (VerifyingStream's, for a Buffer). */
export function verifyBytes(
  data: Buffer,
  expected: Digest,
  expectedSize: number | undefined,
  what: string,
): void {
  const error = mismatch(expected, expectedSize, what, data.length, () =>
    createHash(digestAlgorithm(expected)).update(data).digest('hex'),
  );
  if (error !== undefined) throw error;
}

function mismatch(
  expected: Digest,
  expectedSize: number | undefined,
  what: string,
  size: number,
  hex: () => string,
): StratumError | undefined {
  if (expectedSize !== undefined && size > expectedSize)
    return new StratumError(
      'DIGEST_MISMATCH',
      `${what}: more than the expected ${expectedSize} bytes for ${expected}`,
    );
  if (expectedSize !== undefined && size !== expectedSize) {
    return new StratumError(
      'DIGEST_MISMATCH',
      `${what}: size ${size} does not match the expected ${expectedSize} for ${expected}`,
    );
  }
  const actual = `${digestAlgorithm(expected)}:${hex()}`;
  if (actual !== expected)
    return new StratumError('DIGEST_MISMATCH', `${what}: content is ${actual}, expected ${expected}`);
  return undefined;
}

/**
 * The ChainID of a list of diff_ids (image-spec config.md): ChainID(L0) = DiffID(L0),
 * ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)). The empty chain (scratch) has
 * no ChainID in the spec; stratum uses the sha256 of the empty string for it.
 */
export function chainId(diffIds: readonly Digest[]): Digest {
  let chain: Digest | undefined;
  for (const diffId of diffIds) {
    chain =
      chain === undefined
        ? diffId
        : `sha256:${createHash('sha256').update(`${chain} ${diffId}`).digest('hex')}`;
  }
  return chain ?? `sha256:${createHash('sha256').update('').digest('hex')}`;
}
