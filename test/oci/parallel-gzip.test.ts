import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readFileSync } from 'node:fs';
import { constants, crc32, createDeflateRaw, deflateRawSync, gunzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  GzipBlocks,
  ParallelGzip,
  DEFAULT_BLOCK_SIZE,
  deflateBlock,
  gzipWhole,
  incompressible,
  storedBlocks,
  type ParallelGzipOptions,
} from '../../src/oci/parallel-gzip.js';

async function gzip(parts: readonly Buffer[], options: ParallelGzipOptions = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(parts), new ParallelGzip(options), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return Buffer.concat(out);
}

function mixedInput(): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    parts.push(i % 3 === 0 ? randomBytes(70_000) : Buffer.from('layer bytes '.repeat(9_000 + i)));
  }
  return parts;
}

describe('parallel gzip', () => {
  it('block runs concatenate into one gzip member that gunzip reads back byte for byte', async () => {
    const parts = mixedInput();
    for (const blockSize of [64 * 1024, 1024 * 1024]) {
      const compressed = await gzip(parts, { blockSize });
      expect(gunzipSync(compressed).equals(Buffer.concat(parts))).toBe(true);
    }
  });

  it('an empty input is a valid empty gzip', async () => {
    expect(gunzipSync(await gzip([])).length).toBe(0);
  });

  it('output depends only on the bytes, not on chunking or thread count', async () => {
    const parts = mixedInput();
    const whole = await gzip([Buffer.concat(parts)], { threads: 1 });
    const chunked = await gzip(parts, { threads: 4 });
    expect(chunked.equals(whole)).toBe(true);
  });

  it('the output chunk size (sized from a guess that depends on timing) never changes the bytes', async () => {
    const block = Buffer.concat([randomBytes(600_000), Buffer.from('text '.repeat(100_000))]);
    const dictionary = randomBytes(32 * 1024);
    for (const last of [false, true]) {
      const small = Buffer.concat(await deflateBlock(block, dictionary, 6, last, 1));
      const large = Buffer.concat(await deflateBlock(block, dictionary, 6, last, 4 * 1024 * 1024));
      expect(small.equals(large)).toBe(true);
    }
  });

  it('stored blocks are the bytes zlib writes at level 0 given room for the whole block, for every size class', async () => {
    // As GzipBlocks used zlib: a stream, the block written (no flush) and then ended with the
    // flush (one call with the flush gives other blocks), a dictionary, output room to spare.
    const zlibStream = (block: Buffer, last: boolean): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const engine = createDeflateRaw({
          level: 0,
          finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
          chunkSize: block.length + 64 * 1024,
          dictionary: randomBytes(32 * 1024),
        });
        const chunks: Buffer[] = [];
        engine.on('data', (chunk: Buffer) => chunks.push(chunk));
        engine.on('error', reject);
        engine.on('end', () => {
          resolve(Buffer.concat(chunks));
        });
        engine.end(block);
      });
    // Around zlib's limits: 32 KiB held back until the flush, 65535-byte blocks.
    const sizes = [1, 16_384, 32_767, 32_768, 32_769, 65_534, 65_535, 65_536, 98_302, 98_303, 131_070];
    sizes.push(1024 * 1024, 1024 * 1024 + 1, 1_500_001);
    for (const size of sizes) {
      const block = randomBytes(size);
      for (const last of [false, true]) {
        const zlib = await zlibStream(block, last);
        const ours = Buffer.concat(storedBlocks(block, last));
        expect(ours.equals(zlib), `${size} bytes, last ${last}`).toBe(true);
        expect(inflateRawSync(ours, { finishFlush: constants.Z_SYNC_FLUSH }).equals(block)).toBe(true);
      }
    }
  });

  it("a stored block does not depend on the output-size guess (zlib's layout did)", async () => {
    const block = randomBytes(1024 * 1024);
    for (const last of [false, true]) {
      const small = Buffer.concat(await deflateBlock(block, undefined, 0, last, 1));
      const large = Buffer.concat(await deflateBlock(block, undefined, 0, last, 4 * 1024 * 1024));
      expect(small.equals(large)).toBe(true);
    }
  });

  it('reused blocks: a block is written over only after its output and its input hash have settled', async () => {
    // Random (stored: the output is views of the block) and text (deflated) blocks, fed in odd
    // chunk sizes, to an output and an input hash that read what they are given only later.
    const text = (length: number): Buffer =>
      Buffer.from('layer bytes '.repeat(length / 12 + 1)).subarray(0, length);
    const parts = [
      randomBytes(600_000),
      text(300_000),
      randomBytes(1_200_000),
      text(100_000),
      randomBytes(700_000),
    ];
    const input = Buffer.concat(parts);
    const expected = await gzip(parts, { blockSize: 256 * 1024 });

    /**
     * A consumer that reads what it is handed once `lag` newer things wait behind it (or a
     * while later, for the last ones): by then the writer has filled its next blocks, so a
     * block reused too early shows up in what was read. Lag 0 reads at once.
     */
    function laggingReader(lag: number, read: (pieces: readonly Buffer[]) => void) {
      const waiting: [readonly Buffer[], () => void][] = [];
      const readOldest = (keep: number): void => {
        for (const [pieces, settle] of waiting.splice(0, Math.max(0, waiting.length - keep))) {
          read(pieces);
          settle();
        }
      };
      let last: Promise<void> = Promise.resolve();
      const take = (pieces: readonly Buffer[]): Promise<void> | undefined => {
        if (lag === 0) {
          read(pieces);
          return undefined;
        }
        readOldest(lag - 1);
        last = new Promise<void>((resolve) => {
          waiting.push([pieces, resolve]);
          setTimeout(() => {
            readOldest(0);
          }, 250);
        });
        return last;
      };
      return { take, done: () => last };
    }

    // The output lags (stored blocks must wait for it), then the input hash (every block must).
    for (const [outputLag, hashLag] of [
      [1, 0],
      [0, 4],
    ] as const) {
      const out: Buffer[] = [];
      const seen: Buffer[] = [];
      const output = laggingReader(outputLag, (pieces) => out.push(Buffer.concat(pieces)));
      const hash = laggingReader(hashLag, ([block]) => seen.push(Buffer.from(block!)));
      const blocks = new GzipBlocks(
        {
          blockSize: 256 * 1024,
          threads: 2,
          reuseBlocks: true,
          inputCrcGiven: true,
          hashInput: (block) => hash.take([block]),
        },
        (pieces) => output.take(pieces),
      );
      for (let at = 0; at < input.length; at += 300_001) await blocks.write(input.subarray(at, at + 300_001));
      // As the hashing worker gives it: once every block handed over is hashed.
      await blocks.end(() => hash.done().then(() => crc32(Buffer.concat(seen))));
      const what = `output lag ${outputLag}, hash lag ${hashLag}`;
      expect(Buffer.concat(seen).equals(input), what).toBe(true);
      expect(Buffer.concat(out).equals(expected), what).toBe(true);
    }
  });

  it('the header carries no mtime and no file name', async () => {
    const compressed = await gzip([Buffer.from('x')]);
    expect(compressed.subarray(0, 10)).toEqual(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]));
  });

  it('blocks of random bytes are stored, not searched; anything with a compressible part is compressed', () => {
    const random = randomBytes(1024 * 1024);
    expect(incompressible(random)).toBe(true);
    // What level 6 would have made of it: nothing smaller than storing it.
    expect(deflateRawSync(random, { level: 6 }).length).toBeGreaterThanOrEqual(random.length);
    const code = readFileSync(new URL(import.meta.url));
    const text = Buffer.concat(Array<Buffer>(Math.ceil((1024 * 1024) / code.length)).fill(code));
    expect(incompressible(text)).toBe(false);
    expect(incompressible(readFileSync(process.execPath).subarray(0, 1024 * 1024))).toBe(false);
    // Random with a compressible quarter (where a sample falls) is compressed.
    const mixed = Buffer.concat([random.subarray(0, 786_432), Buffer.from('tar header '.repeat(23_832))]);
    expect(incompressible(mixed)).toBe(false);
    expect(incompressible(Buffer.alloc(1024 * 1024))).toBe(false);
  });

  it('a stream of random bytes comes out at about its own size, and gunzip reads it back', async () => {
    const random = randomBytes(3 * 1024 * 1024 + 123);
    const compressed = await gzip([random]);
    expect(gunzipSync(compressed).equals(random)).toBe(true);
    expect(compressed.length).toBeLessThan(random.length * 1.001 + 64);
  });

  it('gzipWhole makes the bytes the blocks make, for every input below a block', async () => {
    const inputs = [
      Buffer.from('a'),
      Buffer.from('layer bytes '.repeat(2_000)),
      randomBytes(20_000), // stored
      Buffer.concat([randomBytes(30_000), Buffer.alloc(30_000, 7)]), // compressible after all
      Buffer.concat([Buffer.from('x'.repeat(5_000)), randomBytes(200_000)]),
      randomBytes(DEFAULT_BLOCK_SIZE - 1),
    ];
    for (const [index, input] of inputs.entries()) {
      for (const level of [1, 6, 9]) {
        const whole = Buffer.concat(gzipWhole(input, level));
        expect(whole.equals(await gzip([input], { level })), `input ${index}, level ${level}`).toBe(true);
        expect(gunzipSync(whole).equals(input)).toBe(true);
      }
    }
    expect(() => gzipWhole(Buffer.alloc(DEFAULT_BLOCK_SIZE), 6)).toThrow(/a block or more/);
  });
});
