import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import {
  compressionName,
  decompressedStream,
  layerCompression,
  layerCompressor,
  ociLayerMediaType,
  parseCompression,
  sniffCompression,
  zstdSupported,
} from '../../src/oci/compression.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/types.js';
import { writeDirectoryLayer } from '../../src/snapshot/layer-writer.js';
import { requireTool } from '../helpers/system.js';

/**
 * The compression module. zstd tests run on both Node lines with a real assertion each: where
 * node:zlib has zstd (Node ≥ 22.15, CI's Node 24) they check the bytes, where it has not (CI's
 * Node 20) they check the one-line UNSUPPORTED error.
 */

const UNSUPPORTED_MESSAGE =
  /zstd compression needs node:zlib's zstd, which this Node\.js \(v\d+\.\d+\.\d+\) lacks; Node\.js 22\.15 or later has it/;

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function rejection(promise: Promise<unknown>): Promise<StratumError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StratumError);
  return error as StratumError;
}

/** Deterministic bytes that compress like real files: text runs and pseudo-random runs. */
function mixedBytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let state = seed;
  let offset = 0;
  while (offset < size) {
    state = (state * 1103515245 + 12345) >>> 0;
    const run = Math.min(size - offset, 512 + (state % 8192));
    if (state % 3 === 0) {
      for (let i = 0; i < run; i++) {
        state = (state * 1103515245 + 12345) >>> 0;
        out[offset + i] = state >>> 24;
      }
    } else {
      out.write(`line ${offset} of a text file that repeats itself\n`.repeat(run).slice(0, run), offset);
    }
    offset += run;
  }
  return out;
}

/** Runs a layer compressor over `parts` and returns what it emitted. */
async function compressWith(
  parts: readonly Buffer[],
  spec: Parameters<typeof layerCompressor>[0],
  threads: number,
): Promise<Buffer> {
  const out: Buffer[] = [];
  const compressor = layerCompressor(
    spec,
    // Copied: the compressor reuses its blocks once the output has settled.
    (pieces) => void out.push(...pieces.map((piece) => Buffer.from(piece))),
    { threads },
  );
  for (const part of parts) await compressor.write(part);
  await compressor.end();
  return Buffer.concat(out);
}

describe('compression: names, media types, magic bytes', () => {
  it('parses --compression values and refuses bad ones as usage errors', () => {
    expect(parseCompression('gzip')).toEqual({ algorithm: 'gzip' });
    expect(parseCompression('zstd')).toEqual({ algorithm: 'zstd' });
    expect(parseCompression('zstd,level=9')).toEqual({ algorithm: 'zstd', level: 9 });
    expect(parseCompression('uncompressed')).toEqual({ algorithm: 'none' });
    expect(compressionName(parseCompression('gzip'))).toBe('gzip-6');
    expect(compressionName(parseCompression('zstd'))).toBe('zstd-3');
    expect(compressionName(parseCompression('zstd,level=19'))).toBe('zstd-19');
    for (const [bad, message] of [
      ['brotli', /unknown compression "brotli"/],
      ['zstd,level=23', /zstd level 23 is out of range 1\.\.19/],
      ['gzip,level=0', /gzip level 0 is out of range 1\.\.9/],
      ['zstd,fast', /unknown option "fast" for zstd/],
      ['uncompressed,level=1', /unknown option "level=1" for uncompressed/],
    ] as const) {
      let error: unknown;
      try {
        parseCompression(bad);
      } catch (caught) {
        error = caught;
      }
      expect(error, bad).toBeInstanceOf(StratumError);
      expect((error as StratumError).code, bad).toBe('USAGE');
      expect((error as StratumError).message, bad).toMatch(message);
    }
  });

  it('media type ↔ compression, and the magic bytes', () => {
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      expect(layerCompression(ociLayerMediaType(compression))).toBe(compression);
    }
    expect(ociLayerMediaType('zstd')).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(layerCompression(MediaType.dockerLayerGzip)).toBe('gzip');
    expect(layerCompression('application/vnd.oci.image.config.v1+json')).toBeUndefined();
    expect(sniffCompression(gzipSync(Buffer.from('x')))).toBe('gzip');
    expect(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0]))).toBe('zstd');
    expect(sniffCompression(Buffer.from('ustar'))).toBe('none');
    expect(sniffCompression(Buffer.from([0x28, 0xb5]))).toBe('none');
  });
});

describe('zstd frames: parallel, reproducible, readable by every zstd reader', () => {
  const data = mixedBytes(9 * 1024 * 1024 + 12345, 7);
  // Uneven parts, so frame boundaries never line up with write boundaries.
  const parts = [data.subarray(0, 1000), data.subarray(1000, 5_000_000), data.subarray(5_000_000)];

  it('frames compressed side by side decode to the input (Node and the zstd CLI), the same bytes whatever the threads', async () => {
    const spec = { algorithm: 'zstd', level: 3 } as const;
    if (!zstdSupported()) {
      // Node 20: the writer refuses before producing anything.
      expect(() => layerCompressor(spec, () => undefined)).toThrow(UNSUPPORTED_MESSAGE);
      return;
    }
    const one = await compressWith(parts, spec, 1);
    const three = await compressWith(parts, spec, 3);
    expect(three.equals(one)).toBe(true);
    expect(sniffCompression(one)).toBe('zstd');
    // 9 MiB in 4 MiB frames: three frame magics, at least.
    const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
    let frames = 0;
    for (let at = one.indexOf(magic); at >= 0; at = one.indexOf(magic, at + 1)) frames++;
    expect(frames).toBeGreaterThanOrEqual(3);
    const { compression, stream } = await decompressedStream(Readable.from([one]), 'test blob');
    expect(compression).toBe('zstd');
    expect((await collect(stream)).equals(data)).toBe(true);
    if (requireTool('zstd', 'zstd')) {
      const byCli = execFileSync('zstd', ['-dc'], { input: one, maxBuffer: 64 * 1024 * 1024 });
      expect(byCli.equals(data)).toBe(true);
    }
  });

  it('an empty input is still a valid zstd stream', async () => {
    const spec = { algorithm: 'zstd' } as const;
    if (!zstdSupported()) {
      expect(() => layerCompressor(spec, () => undefined)).toThrow(UNSUPPORTED_MESSAGE);
      return;
    }
    const empty = await compressWith([], spec, 2);
    expect(sniffCompression(empty)).toBe('zstd');
    const { stream } = await decompressedStream(Readable.from([empty]), 'empty');
    expect((await collect(stream)).length).toBe(0);
  });

  it('a stream from the zstd CLI is read where node:zlib has zstd, else UNSUPPORTED naming it', async () => {
    if (!requireTool('zstd', 'zstd')) return;
    const compressed = execFileSync('zstd', ['-q', '-19', '-c'], { input: data.subarray(0, 100_000) });
    if (zstdSupported()) {
      const { stream } = await decompressedStream(Readable.from([compressed]), 'cli blob');
      expect((await collect(stream)).equals(data.subarray(0, 100_000))).toBe(true);
    } else {
      const error = await rejection(decompressedStream(Readable.from([compressed]), 'cli blob'));
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toMatch(/^cli blob: /);
      expect(error.message).toMatch(UNSUPPORTED_MESSAGE);
    }
  });
});

describe('zstd layers from the layer writer', () => {
  let root: string;
  let storeDir: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'stratum-zstd-tree-'));
    storeDir = await mkdtemp(join(tmpdir(), 'stratum-zstd-store-'));
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/hostname'), 'stratum\n');
    await mkdir(join(root, 'data'));
    await writeFile(join(root, 'data/mixed.bin'), mixedBytes(6 * 1024 * 1024, 3));
    await writeFile(join(root, 'data/small.txt'), 'small\n');
    for (const path of ['etc/hostname', 'data/mixed.bin', 'data/small.txt'])
      await chmod(join(root, path), 0o644);
    for (const path of ['etc', 'data']) await chmod(join(root, path), 0o755);
    for (const path of ['etc/hostname', 'data/mixed.bin', 'data/small.txt', 'etc', 'data']) {
      await utimes(join(root, path), 1_600_000_000, 1_600_000_000);
    }
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(storeDir, { recursive: true, force: true });
  });

  // Owners are in the tar: mapOwner records every file as root, whoever runs the test.
  const options = { sourceDateEpoch: 1_600_000_000, mapOwner: () => [0, 0] as const };

  /**
   * Pinned per zstd library version: the blob bytes depend on libzstd (process.versions.zstd),
   * so a Node upgrade that changes them shows up here rather than as silent cache misses.
   * A new libzstd version needs its digest added after checking the layer reads back.
   */
  const GOLDEN_DIFF_ID = 'sha256:2b1b21702c5d9abae22a3c559f21a27c8456c47bda9f17d277953dcee807008f';
  const golden: Readonly<Record<string, string>> = {
    '1.5.7': 'sha256:7b27b95a37f15b8d21e8f46e90c1e63af6c72bc7ddc8433cd41004e8cc409a1b',
  };

  it('golden digests: the same tree gives the same zstd blob, and the same diff_id as gzip', async () => {
    const store = new BlobStore(storeDir);
    const gzip = await writeDirectoryLayer(root, store, options);
    expect(gzip.diffId).toBe(GOLDEN_DIFF_ID);
    if (!zstdSupported()) {
      const error = await rejection(
        writeDirectoryLayer(root, store, { ...options, compression: { algorithm: 'zstd' } }),
      );
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toMatch(UNSUPPORTED_MESSAGE);
      // Nothing half-written: only the gzip blob is in the store.
      expect(await readdir(join(storeDir, 'blobs/sha256'))).toEqual([gzip.descriptor.digest.slice(7)]);
      return;
    }
    const first = await writeDirectoryLayer(root, store, {
      ...options,
      compression: { algorithm: 'zstd' },
      compressionThreads: 1,
    });
    const second = await writeDirectoryLayer(root, store, {
      ...options,
      compression: { algorithm: 'zstd', level: 3 },
      compressionThreads: 3,
    });
    expect(first.descriptor.mediaType).toBe(MediaType.ociLayerZstd);
    expect(second.descriptor).toEqual(first.descriptor);
    expect(first.diffId).toBe(gzip.diffId);
    expect(first.diffId).toBe(GOLDEN_DIFF_ID);
    const zstdVersion = (process.versions as Record<string, string | undefined>)['zstd'] ?? 'unknown';
    expect(first.descriptor.digest, `golden digest for libzstd ${zstdVersion}`).toBe(golden[zstdVersion]);
    const blob = await readFile(store.path(first.descriptor.digest));
    expect(sha256Digest(blob)).toBe(first.descriptor.digest);
    const { stream } = await decompressedStream(Readable.from([blob]), 'golden');
    const tar = await collect(stream);
    expect(`sha256:${createHash('sha256').update(tar).digest('hex')}`).toBe(first.diffId);
    const level9 = await writeDirectoryLayer(root, store, {
      ...options,
      compression: { algorithm: 'zstd', level: 9 },
    });
    expect(level9.descriptor.digest).not.toBe(first.descriptor.digest);
    expect(level9.diffId).toBe(first.diffId);
  });
});
