import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { StratumError } from '../../errors.js';
import { MediaType, type Digest } from '../../oci/types.js';

/**
 * Checks a gzip layer's diff_id while it streams past. A shared cache entry names both the
 * compressed digest (verified by the download) and the uncompressed diff_id, which goes into the
 * image config of every build that hits it; an entry written by a buggy or hostile client could
 * pair a real blob with a wrong diff_id, so the diff_id is checked too, not trusted.
 * Chunks pass through unchanged; the stream errors at its end on a mismatch.
 */
export class DiffIdCheck extends Transform {
  private readonly gunzip: Gunzip;
  private readonly hash = createHash('sha256');
  private failure: Error | undefined;
  private readonly ended: Promise<void>;

  constructor(
    private readonly expected: Digest,
    private readonly what: string,
  ) {
    super();
    this.gunzip = createGunzip();
    this.gunzip.on('data', (chunk: Buffer) => this.hash.update(chunk));
    this.ended = new Promise((resolve) => {
      this.gunzip.once('end', resolve);
      this.gunzip.once('error', (error) => {
        this.failure = new StratumError(
          'DIGEST_MISMATCH',
          `${this.what}: layer is not valid gzip (${error.message})`,
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

/** Whether a layer's diff_id can be checked here: gzip (inflated on the way) or plain tar (the same digest). */
export function diffIdCheckable(mediaType: string): 'gzip' | 'tar' | undefined {
  if (mediaType === MediaType.ociLayerGzip || mediaType === MediaType.dockerLayerGzip) return 'gzip';
  if (mediaType === MediaType.ociLayer) return 'tar';
  return undefined;
}
