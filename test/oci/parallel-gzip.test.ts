import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readFileSync } from 'node:fs';
import { deflateRawSync, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  ParallelGzip,
  deflateBlock,
  incompressible,
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
});
