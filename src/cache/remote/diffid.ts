import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StratumError } from '../../errors.js';
import { createDecompressor, layerCompression, type Compression } from '../../oci/compression.js';
import type { Digest } from '../../oci/types.js';

/**
 * Checks a compressed layer's diff_id while it streams past. A shared cache entry names both the
 * compressed digest (verified by the download) and the uncompressed diff_id, which goes into the
 * image config of every build that hits it; an entry written by a buggy or hostile client could
 * pair a real blob with a wrong diff_id, so the diff_id is checked too, not trusted.
 * Chunks pass through unchanged; the stream errors at its end on a mismatch.
 */
export class DiffIdCheck extends Transform {
  private readonly gunzip: Transform;
  private readonly hash = createHash('sha256');
  private failure: Error | undefined;
  private readonly ended: Promise<void>;

  constructor(
    private readonly expected: Digest,
    private readonly what: string,
    compression: 'gzip' | 'zstd',
  ) {
    super();
    // zstd where this Node.js has none throws UNSUPPORTED here: the entry is then a miss.
    this.gunzip = createDecompressor(compression, what)!;
    this.gunzip.on('data', (chunk: Buffer) => this.hash.update(chunk));
    this.ended = new Promise((resolve) => {
      this.gunzip.once('end', resolve);
      this.gunzip.once('error', (error) => {
        this.failure = new StratumError(
          'DIGEST_MISMATCH',
          `${this.what}: layer is not valid ${compression} (${error.message})`,
        );
        resolve();
      });
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.failure !== undefined) {
      callback(this.failure);
      return;
    }
    if (this.gunzip.write(chunk)) callback(null, chunk);
    else
      this.gunzip.once('drain', () => {
        callback(null, chunk);
      });
  }

  override _flush(callback: TransformCallback): void {
    this.gunzip.end();
    void this.ended.then(() => {
      if (this.failure !== undefined) {
        callback(this.failure);
        return;
      }
      const actual: Digest = `sha256:${this.hash.digest('hex')}`;
      callback(
        actual === this.expected
          ? null
          : new StratumError(
              'DIGEST_MISMATCH',
              `${this.what}: uncompressed content is ${actual}, the entry says ${this.expected}`,
            ),
      );
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.gunzip.destroy();
    callback(error);
  }
}

/**
 * How a layer's diff_id is checked here: gzip and zstd are inflated on the way, a plain tar's
 * diff_id is its digest; undefined for media types that do not say.
 */
export function diffIdCheckable(mediaType: string): Compression | undefined {
  return layerCompression(mediaType);
}
