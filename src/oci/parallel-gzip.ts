import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { constants, crc32, createDeflateRaw, deflateRawSync, type ZlibOptions } from 'node:zlib';

/**
 * gzip in blocks compressed side by side on libuv's threadpool, the way pigz does it: each block
 * is an independent raw-deflate run primed with the previous block's last 32 KiB as dictionary
 * (so the ratio stays within a fraction of a percent of one stream) and ended with a sync flush
 * (so the runs concatenate into one valid deflate stream); the last block ends the stream.
 *
 * The output depends only on the input bytes, the level and the block size, never on timing or
 * thread count, so layer digests stay reproducible. The gzip header carries no name and mtime 0.
 *
 * A block that will not compress (random bytes, media, data already compressed) is stored
 * (level 0) instead of searched: deflate at level 6 spends ~20 ms per MiB finding nothing, and
 * then emits stored blocks anyway. Whether a block is such is decided from the block's own
 * bytes (see `incompressible`), so the output still depends only on the input.
 */
export interface ParallelGzipOptions {
  /** zlib level 0..9; Docker and Go's gzip.DefaultCompression are level 6 */
  readonly level?: number;
  /** blocks in flight; default: CPUs - 1, between 1 and 4 (libuv's default pool) */
  readonly threads?: number;
  /** uncompressed bytes per block; fixed for reproducibility */
  readonly blockSize?: number;
  /**
   * The caller sums the crc32 of the input itself (on the hashing worker, with the diff_id) and
   * gives it to `end`, so the main thread does not.
   */
  readonly inputCrcGiven?: boolean;
  /**
   * The output is done with the pieces it was given once the promise it returned has settled,
   * so a stored block's memory (which its pieces are views of) goes back to the pool then.
   * Without it, a stored block is never reused and the output may keep its pieces.
   */
  readonly reuseBlocks?: boolean;
  /**
   * Sees each block of input, in order, as it is handed to deflate (the layer writer hashes the
   * tar there, on the hashing worker, rather than each chunk before it is copied in); the block
   * is reused once the promise returned has settled.
   */
  readonly hashInput?: (block: Buffer) => Promise<void> | undefined;
  /** Where block buffers come from (the layer writer's are shared memory the worker reads). */
  readonly allocate?: (size: number) => Buffer;
}

/** GzipBlocks' block size when none is given; `gzipWhole` takes inputs below it. */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
const DICTIONARY = 32 * 1024;
// Go's compress/gzip header: no FNAME, MTIME 0, XFL 0, OS 255 (unknown). Using OS 255 rather
// than zlib's 3 keeps the blob free of anything that depends on the host.
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]);

/**
 * One block through raw deflate, as the chunks zlib produced (each its own memory, never reused
 * by zlib). node:zlib's one-shot `deflateRaw` joins them with Buffer.concat, a copy of every
 * block (the data and the sync-flush marker arrive as two chunks), which on a 300 MB layer of
 * stored blocks cost a quarter of a second of main thread and as much garbage.
 */
export function deflateBlock(
  block: Buffer,
  dictionary: Buffer | undefined,
  level: number,
  last: boolean,
  outputGuess: number,
): Promise<Buffer[]> {
  if (level === 0) return Promise.resolve(storedBlocks(block, last));
  const options: ZlibOptions = {
    level,
    finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
    // With zlib's default 16 KiB output chunks, every 16 KiB of output is a round trip to the
    // main thread, which halved throughput in bench/layer-write.js; one chunk the size of the
    // whole block wastes up to 1 MiB per block that V8 frees late (peak RSS). So: a guess from
    // the previous block's ratio, usually one round trip. The bytes produced do not depend on it.
    chunkSize: Math.max(64 * 1024, Math.min(outputGuess, block.length + (block.length >>> 8) + 1024)),
    ...(dictionary ? { dictionary } : {}),
  };
  return new Promise<Buffer[]>((resolve, reject) => {
    const engine = createDeflateRaw(options);
    const chunks: Buffer[] = [];
    engine.on('data', (chunk: Buffer) => chunks.push(chunk));
    engine.on('error', reject);
    engine.on('end', () => {
      engine.close();
      resolve(chunks);
    });
    engine.end(block);
  });
}

/** Deflate's longest stored block (RFC 1951 §3.2.4: LEN is 16 bits). */
const MAX_STORED = 65535;
/** zlib keeps a tail shorter than this (its window, 32 KiB) back until the flush. */
const STORED_HOLD_BELOW = 32 * 1024;

/**
 * A block as deflate stored blocks, the bytes zlib 1.2.12+ writes for it at level 0 when its
 * output buffer has room for the whole block (deflate_stored; test/oci/parallel-gzip.test.ts
 * compares the two): blocks of 65535 bytes while at least 32 KiB is left, then the rest as one
 * block at the flush, then the empty block of a sync flush, or the final block. Written here
 * because zlib's layout depends on its output buffer size (a smaller buffer gives shorter
 * blocks, so the bytes depended on the output-size guess, which came from whichever block had
 * finished last), and because a deflate engine per block cost ~0.5 ms of main thread to set up,
 * more than the copy (W-many's 300 MB layer is 300 such blocks).
 *
 * The result is pieces: 5-byte headers (one small buffer for all of them) between views of
 * `block` itself, never a copy. Copying each 1 MiB block into fresh memory cost ~0.5 ms in page
 * faults and as much garbage: ~160 ms of main thread per 300 MB of random bytes. The pieces
 * are only valid while `block` is (see GzipBlocks' `reuseBlocks`).
 */
export function storedBlocks(block: Buffer, last: boolean): Buffer[] {
  const lengths: number[] = [];
  let left = block.length;
  while (left >= STORED_HOLD_BELOW) {
    const length = Math.min(MAX_STORED, left);
    lengths.push(length);
    left -= length;
  }
  // At the flush: the tail held back, then the sync flush's empty block, or the final block
  // (empty when nothing was held back).
  if (left > 0) lengths.push(left);
  if (!last || left === 0) lengths.push(0);
  const headers = Buffer.allocUnsafe(5 * lengths.length);
  const pieces: Buffer[] = [];
  let from = 0;
  lengths.forEach((length, index) => {
    const at = 5 * index;
    headers[at] = last && index === lengths.length - 1 ? 1 : 0; // BFINAL, BTYPE 00 (stored)
    headers.writeUInt16LE(length, at + 1);
    headers.writeUInt16LE(length ^ 0xffff, at + 3);
    pieces.push(headers.subarray(at, at + 5));
    if (length > 0) pieces.push(block.subarray(from, from + length));
    from += length;
  });
  return pieces;
}

/** Samples spread over a block: SAMPLE bytes at 0, 1/4, 1/2 and 3/4 of it. */
const SAMPLE = 4 * 1024;
/**
 * Bits per byte above which a sample counts as random. Deflate's Huffman stage gains little
 * above ~7.8, and text, code, tar headers and binaries sit at 4.5–6.5; measured level-6 ratios
 * on data above the line were 99.9–100 %.
 */
const RANDOM_BITS = 7.8;

/**
 * Whether deflate would find next to nothing in `block`, by the byte entropy of four samples
 * (btrfs decides its compression the same way): all must be above RANDOM_BITS. ~20 µs per MiB on
 * the main thread, where a level-1 trial deflate of the same samples took 2 ms. Data the samples
 * misjudge (a random 4 KiB pattern repeated) is stored a little larger, never wrong.
 */
export function incompressible(block: Buffer): boolean {
  if (block.length < 4 * SAMPLE) return false;
  const counts = SAMPLE_COUNTS;
  for (let quarter = 0; quarter < 4; quarter++) {
    // (length - SAMPLE) * quarter / 4: exact, the same start as at 0, 1/4, 1/2 and 3/4.
    const start = Math.floor(((block.length - SAMPLE) * quarter) / 4);
    counts.fill(0);
    for (let index = start; index < start + SAMPLE; index++) counts[block[index]!]!++;
    // Summed in byte order, the same float operations as always: the decision must not move.
    let bits = 0;
    for (let value = 0; value < 256; value++) {
      const count = counts[value]!;
      if (count > 0) bits -= (count / SAMPLE) * Math.log2(count / SAMPLE);
    }
    if (bits < RANDOM_BITS) return false;
  }
  return true;
}

/** incompressible's byte counts, reused: it runs once per block on the main thread. */
const SAMPLE_COUNTS = new Uint32Array(256);

/**
 * Finished blocks whose output has not settled yet, at most: enough for the blob store's writes
 * to overlap the next blocks' reading and hashing, few enough to bound memory (1 MiB each).
 */
const OUTPUTS_IN_FLIGHT = 4;
/** Blocks whose `hashInput` has not settled yet, at most (the hashing worker may lag behind). */
const HASHES_IN_FLIGHT = 4;

/** Where compressed pieces go, in order; see ParallelGzipOptions.reuseBlocks for the promise. */
export type GzipOutput = (pieces: readonly Buffer[]) => void | Promise<void>;

/**
 * The block compressor without stream machinery: `write` copies the chunk before it returns its
 * promise, so the caller may reuse the chunk's buffer at once (the layer writer does, to keep
 * peak RSS low), and resolves when few enough blocks are in flight (backpressure).
 */
export class GzipBlocks {
  private readonly level: number;
  private readonly threads: number;
  private readonly blockSize: number;
  private readonly reuseBlocks: boolean;
  private readonly hashInput: ((block: Buffer) => Promise<void> | undefined) | undefined;
  private readonly allocate: (size: number) => Buffer;
  /**
   * Input is copied into pooled block buffers rather than kept as views of the caller's chunks:
   * a view would pin a whole upstream buffer, and a fresh 1 MiB concat per block is garbage
   * that V8 collects late, which showed up as peak RSS. A block goes back to the pool when
   * deflate is done with it, or, for a stored block (whose output is views of it), when its
   * output has settled (reuseBlocks), and in both cases its `hashInput` too.
   */
  private readonly free: Buffer[] = [];
  private current: Buffer | undefined;
  private fill = 0;
  private previousTail: Buffer | undefined;
  private crc = 0;
  private readonly inputCrcGiven: boolean;
  private total = 0;
  private readonly inFlight: {
    readonly result: Promise<Buffer[]>;
    readonly input: Buffer;
    readonly hashed: Promise<void> | undefined;
    /** the output is views of `input` (stored) */
    readonly viewsOfInput: boolean;
  }[] = [];
  /** Outputs not settled yet, in order. */
  private readonly outputs: Promise<void>[] = [];
  /** `hashInput` promises not settled yet, in order. */
  private readonly hashes: Promise<void>[] = [];
  private headerWritten = false;
  private lastRatio = 1;

  constructor(
    options: ParallelGzipOptions,
    private readonly output: GzipOutput,
  ) {
    this.level = options.level ?? 6;
    // One core stays with the main thread, which reads, hashes and copies: on 2 cores one block
    // in flight measured faster than two (bench/README.md). At most 4: libuv's pool size.
    this.threads = Math.max(1, options.threads ?? Math.min(4, availableParallelism() - 1));
    this.blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    this.inputCrcGiven = options.inputCrcGiven === true;
    this.reuseBlocks = options.reuseBlocks === true;
    this.hashInput = options.hashInput;
    this.allocate = options.allocate ?? ((size) => Buffer.allocUnsafe(size));
  }

  write(chunk: Buffer): Promise<void> {
    if (!this.inputCrcGiven) this.crc = crc32(chunk, this.crc);
    this.total += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      this.current ??= this.free.pop() ?? this.allocate(this.blockSize);
      const take = Math.min(chunk.length - offset, this.blockSize - this.fill);
      chunk.copy(this.current, this.fill, offset, offset + take);
      this.fill += take;
      offset += take;
      if (this.fill === this.blockSize) this.dispatch(false);
    }
    return this.drain(this.threads);
  }

  /**
   * `inputCrc`: the input's crc32, when the options say the caller computes it; asked for once
   * the last block has gone to `hashInput`, so a digest fed there may be ended then.
   */
  async end(inputCrc?: () => number | Promise<number>): Promise<void> {
    if (this.inputCrcGiven && inputCrc === undefined)
      throw new Error('GzipBlocks: the input crc32 is missing');
    this.dispatch(true);
    const crcGiven = this.inputCrcGiven ? Promise.resolve(inputCrc!()) : undefined;
    // Handled here, awaited below: the last blocks are drained first.
    crcGiven?.catch(() => undefined);
    await this.drain(0);
    const crc = crcGiven !== undefined ? await crcGiven : this.crc;
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(this.total % 2 ** 32, 4);
    // Awaited below with the other outputs.
    void this.emit([trailer]);
    while (this.outputs.length > 0) await this.outputs.shift();
    while (this.hashes.length > 0) await this.hashes.shift();
  }

  private dispatch(last: boolean): void {
    const input = this.current ?? Buffer.alloc(0);
    const block = input.subarray(0, this.fill);
    this.current = undefined;
    this.fill = 0;
    const dictionary = this.previousTail;
    let hashed: Promise<void> | undefined;
    if (block.length > 0 && this.hashInput !== undefined) {
      hashed = this.hashInput(block);
      if (hashed !== undefined) {
        // Marked handled here; drain() and end() await it in order.
        hashed.catch(() => undefined);
        this.hashes.push(hashed);
      }
    }
    if (block.length > 0) {
      this.previousTail = Buffer.from(block.subarray(Math.max(0, block.length - DICTIONARY)));
    }
    const guess = Math.ceil(block.length * this.lastRatio * 1.25) + 4096;
    const level = this.level > 0 && incompressible(block) ? 0 : this.level;
    const result = deflateBlock(block, dictionary, level, last, guess).then((chunks) => {
      const produced = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
      if (block.length > 0) this.lastRatio = produced / block.length;
      return chunks;
    });
    // Marked handled here; drain() awaits it in order and passes the error on.
    result.catch(() => undefined);
    this.inFlight.push({ result, input, hashed, viewsOfInput: level === 0 });
  }

  /**
   * Emits finished blocks in order until at most `keep` are still in flight, then waits until
   * at most OUTPUTS_IN_FLIGHT outputs and HASHES_IN_FLIGHT input hashes are unsettled.
   */
  private async drain(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const next = this.inFlight.shift()!;
      const compressed = await next.result;
      const output = this.emit(compressed);
      if (next.input.length !== this.blockSize) continue; // not a pooled block
      if (next.viewsOfInput && !this.reuseBlocks) continue; // the output may keep the views
      const holds = [next.hashed, next.viewsOfInput ? output : undefined].filter(
        (hold) => hold !== undefined,
      );
      if (holds.length === 0) this.free.push(next.input);
      else
        Promise.all(holds).then(
          () => this.free.push(next.input),
          () => undefined,
        );
    }
    while (this.outputs.length > OUTPUTS_IN_FLIGHT) await this.outputs.shift();
    while (this.hashes.length > HASHES_IN_FLIGHT) await this.hashes.shift();
  }

  private emit(pieces: readonly Buffer[]): Promise<void> {
    let all = pieces;
    if (!this.headerWritten) {
      this.headerWritten = true;
      all = [GZIP_HEADER, ...pieces];
    }
    let output: Promise<void>;
    try {
      output = Promise.resolve(this.output(all));
    } catch (error) {
      output = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    // Marked handled here; awaited in order by drain() or end().
    output.catch(() => undefined);
    this.outputs.push(output);
    return output;
  }
}

/**
 * The gzip member GzipBlocks makes of an input shorter than one block, made synchronously: its
 * one block is the last (deflated with Z_FINISH and no dictionary, or stored when
 * `incompressible`), between the same header and trailer. For layers of a few kilobytes (a
 * COPY of a source file, a compiled binary), where the blocks' thread-pool round trips cost more
 * than deflate itself. test/oci/parallel-gzip.test.ts checks the bytes are GzipBlocks'.
 */
export function gzipWhole(data: Buffer, level: number): Buffer[] {
  if (data.length >= DEFAULT_BLOCK_SIZE) throw new Error('gzipWhole: the input is a block or more');
  const body =
    level > 0 && !incompressible(data)
      ? [deflateRawSync(data, { level, finishFlush: constants.Z_FINISH })]
      : storedBlocks(data, true);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data) >>> 0, 0);
  trailer.writeUInt32LE(data.length, 4);
  return [GZIP_HEADER, ...body, trailer];
}

/** GzipBlocks as a Transform stream. */
export class ParallelGzip extends Transform {
  private readonly blocks: GzipBlocks;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    // Without reuseBlocks, every stored block's memory is its own, so pushing views is safe.
    this.blocks = new GzipBlocks({ ...options, reuseBlocks: false }, (pieces) => {
      for (const piece of pieces) this.push(piece);
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.blocks.write(chunk).then(() => {
      callback();
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.blocks.end().then(() => {
      callback();
    }, callback);
  }
}
