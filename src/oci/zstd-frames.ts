import { availableParallelism } from 'node:os';
import { zstdCodec, type ZstdCodec } from './zstd-codec.js';

/**
 * zstd in independent frames compressed side by side on libuv's threadpool. A zstd stream may
 * be any number of frames one after another (RFC 8878 §3.1), and every reader (zstd, containerd,
 * skopeo, Node's createZstdDecompress) decodes them as one; splitting the input into fixed-size
 * blocks costs a little ratio (no match can reach into the previous block) and buys parallelism
 * that node:zlib's one-stream API does not offer.
 *
 * The output depends only on the input bytes, the level, the block size and the zstd library
 * (process.versions.zstd), never on timing or thread count, so layer digests are reproducible.
 */
export interface ZstdFramesOptions {
  /** zstd level 1..22; default 3, the zstd CLI's and BuildKit's default */
  readonly level?: number;
  /** frames in flight; default: CPUs - 1, between 1 and 4 (libuv's default pool) */
  readonly threads?: number;
  /** uncompressed bytes per frame; fixed for reproducibility */
  readonly blockSize?: number;
}

/**
 * 4 MiB: twice the match window of level 3 (2 MiB), so a frame boundary cuts matches only near
 * its start; bench/README.md has the ratio against one stream.
 */
export const ZSTD_BLOCK_SIZE = 4 * 1024 * 1024;

/** Like GzipBlocks: `write` copies the chunk before it returns, then waits for a free slot. */
export class ZstdFrames {
  private readonly level: number;
  private readonly threads: number;
  private readonly blockSize: number;
  private readonly codec: ZstdCodec;
  private readonly free: Buffer[] = [];
  private current: Buffer | undefined;
  private fill = 0;
  private framesStarted = 0;
  private readonly inFlight: { readonly result: Promise<Buffer>; readonly input: Buffer }[] = [];

  constructor(
    options: ZstdFramesOptions,
    private readonly output: (data: Buffer) => void | Promise<void>,
  ) {
    this.level = options.level ?? 3;
    this.threads = Math.max(1, options.threads ?? Math.min(4, availableParallelism() - 1));
    this.blockSize = options.blockSize ?? ZSTD_BLOCK_SIZE;
    this.codec = zstdCodec('layer write');
  }

  write(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      this.current ??= this.free.pop() ?? Buffer.allocUnsafe(this.blockSize);
      const take = Math.min(chunk.length - offset, this.blockSize - this.fill);
      chunk.copy(this.current, this.fill, offset, offset + take);
      this.fill += take;
      offset += take;
      if (this.fill === this.blockSize) this.dispatch();
    }
    return this.drain(this.threads);
  }

  async end(): Promise<void> {
    // An empty input is still one (empty) frame: a zero-byte blob is not valid zstd.
    if (this.fill > 0 || this.framesStarted === 0) this.dispatch();
    await this.drain(0);
  }

  private dispatch(): void {
    const input = this.current ?? Buffer.alloc(0);
    const block = input.subarray(0, this.fill);
    this.current = undefined;
    this.fill = 0;
    this.framesStarted++;
    const result = this.codec.compress(block, this.level);
    // Marked handled here; drain() awaits it in order and passes the error on.
    result.catch(() => undefined);
    this.inFlight.push({ result, input });
  }

  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const next = this.inFlight.shift()!;
      const compressed = await next.result;
      if (next.input.length === this.blockSize) this.free.push(next.input);
      await this.output(compressed);
    }
  }
}
