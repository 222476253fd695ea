import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { constants, crc32, deflateRaw, type ZlibOptions } from 'node:zlib';

/**
 * gzip in blocks compressed side by side on libuv's threadpool, the way pigz does it: each block
 * is an independent raw-deflate run primed with the previous block's last 32 KiB as dictionary
 * (so the ratio stays within a fraction of a percent of one stream) and ended with a sync flush
 * (so the runs concatenate into one valid deflate stream); the last block ends the stream.
 *
 * The output depends only on the input bytes, the level and the block size, never on timing or
 * thread count, so layer digests stay reproducible. The gzip header carries no name and mtime 0.
 */
export interface ParallelGzipOptions {
  /** zlib level 0..9; Docker and Go's gzip.DefaultCompression are level 6 */
  readonly level?: number;
  /** blocks in flight; default: the number of CPUs, at most 4 (libuv's default pool) */
  readonly threads?: number;
  /** uncompressed bytes per block; fixed for reproducibility */
  readonly blockSize?: number;
}

const DICTIONARY = 32 * 1024;
// Go's compress/gzip header: no FNAME, MTIME 0, XFL 0, OS 255 (unknown). Using OS 255 rather
// than zlib's 3 keeps the blob free of anything that depends on the host.
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);

function deflateBlock(block: Buffer, dictionary: Buffer | undefined, level: number, last: boolean) {
  const options: ZlibOptions = {
    level,
    finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
    ...(dictionary ? { dictionary } : {}),
  };
  return new Promise<Buffer>((resolve, reject) => {
    deflateRaw(block, options, (error, result) => {
      if (error) reject(error);
      else resolve(result);
    });
  });
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly threads: number;
  private readonly blockSize: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private previousTail: Buffer | undefined;
  private crc = 0;
  private total = 0;
  private readonly inFlight: Promise<Buffer>[] = [];
  private headerWritten = false;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? 6;
    this.threads = Math.max(1, options.threads ?? Math.min(4, availableParallelism()));
    this.blockSize = options.blockSize ?? 1024 * 1024;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.crc = crc32(chunk, this.crc);
    this.total += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, this.blockSize - this.pendingBytes);
      this.pending.push(chunk.subarray(offset, offset + take));
      this.pendingBytes += take;
      offset += take;
      if (this.pendingBytes === this.blockSize) this.dispatch(false);
    }
    this.drain(this.threads).then(() => {
      callback();
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.dispatch(true);
    this.drain(0).then(() => {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.total % 2 ** 32, 4);
      this.pushOut(trailer);
      callback();
    }, callback);
  }

  private dispatch(last: boolean): void {
    const block = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    const dictionary = this.previousTail;
    if (block.length > 0) {
      // Copy the tail: `block` may be a view of a caller's buffer that gets reused.
      this.previousTail = Buffer.from(block.subarray(Math.max(0, block.length - DICTIONARY)));
    }
    const compressed = deflateBlock(block, dictionary, this.level, last);
    // Marked handled here; drain() awaits it in order and passes the error on.
    compressed.catch(() => undefined);
    this.inFlight.push(compressed);
  }

  /** Writes finished blocks in order until at most `keep` are still in flight. */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const next = await this.inFlight.shift()!;
      this.pushOut(next);
    }
  }

  private pushOut(data: Buffer): void {
    if (!this.headerWritten) {
      this.headerWritten = true;
      this.push(GZIP_HEADER);
    }
    this.push(data);
  }
}
