import { readdirSync, lstatSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeImage } from '../../src/analyze/analyze.js';
import type { ImageAnalysis } from '../../src/analyze/types.js';
import { parseDockerfile } from '../../src/parser/parse.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';

/**
 * analyze on an image stratum builds here, with known waste, copy-ups and a deleted fake
 * secret; every figure is derived from what the Dockerfile does, never read back from the tool.
 */

const BLOB = 300_000;
const KEY = 'FAKE-PRIVATE-KEY\n';
const BIG = 200_000;

function dockerfile(base: string): string {
  return [
    `FROM ${base}`,
    'RUN head -c 300000 /dev/zero > /blob.bin',
    'RUN rm /blob.bin',
    `RUN mkdir -p /root/.ssh && printf '${KEY.trimEnd()}\\n' > /root/.ssh/id_rsa && chmod 600 /root/.ssh/id_rsa`,
    'RUN rm -f /root/.ssh/id_rsa',
    'COPY big.dat /data/big.dat',
    'RUN chmod 600 /data/big.dat',
    "RUN printf 'X' | dd of=/data/big.dat bs=1 seek=100 conv=notrunc 2>/dev/null",
    '',
  ].join('\n');
}

/** Regular-file bytes under a directory, hard links counted once. */
function contentBytes(dir: string): number {
  let total = 0;
  const seen = new Set<bigint>();
  const walk = (path: string): void => {
    for (const name of readdirSync(path)) {
      const full = join(path, name);
      const info = lstatSync(full, { bigint: true });
      if (info.isDirectory()) walk(full);
      else if (info.isFile() && !seen.has(info.ino)) {
        seen.add(info.ino);
        total += Number(info.size);
      }
    }
  };
  walk(dir);
  return total;
}

describe.skipIf(!isRoot)('stratum analyze on a stratum-built image', () => {
  let sandbox: BuildSandbox;
  let analysis: ImageAnalysis;
  let baseContent: number;
  let text: string;

  beforeAll(async () => {
    sandbox = buildSandbox();
    baseContent = contentBytes(join(sandbox.dir, 'base-rootfs'));
    text = dockerfile(sandbox.baseRef);
    const context = sandbox.context('waste', {
      Dockerfile: text,
      'big.dat': 'b'.repeat(BIG),
    });
    // An old mtime, so the one-byte edit below always shows as a content and mtime change.
    utimesSync(join(context, 'big.dat'), 1_600_000_000, 1_600_000_000);
    const output = `oci:${join(sandbox.dir, 'out')}:waste`;
    await sandbox.build(context, { outputs: [output] });
    const parsed = parseDockerfile(text, { file: 'Dockerfile' });
    const source = await sandbox.open(output);
    try {
      analysis = await analyzeImage(source, {
        dockerfile: { file: 'Dockerfile', instructions: parsed.stages[0]!.instructions },
      });
    } finally {
      await source.close();
    }
  }, 120_000);

  afterAll(() => {
    sandbox.cleanup();
  });

  it('lists one layer per filesystem step with its instruction and content', () => {
    expect(analysis.layers).toHaveLength(8);
    expect(analysis.layers[1]!.createdBy).toBe(
      'RUN /bin/sh -c head -c 300000 /dev/zero > /blob.bin # buildkit',
    );
    expect(analysis.layers.map((layer) => layer.contentBytes)).toEqual([
      baseContent,
      BLOB,
      0,
      KEY.length,
      0,
      BIG,
      BIG,
      BIG,
    ]);
    expect(analysis.layers[1]!.added).toBe(1);
    expect(analysis.layers[2]!.deleted).toBe(1);
    // mkdir -p /root/.ssh and the key: two paths added.
    expect(analysis.layers[3]!.added).toBe(2);
    const baseLayer = analysis.layers[0]!;
    expect(baseLayer.compressedSize).toBe(
      statSync(join(sandbox.base.layout, 'blobs/sha256', baseLayer.digest.slice(7))).size,
    );
  });

  it('wasted bytes: what is deleted or shadowed later, with the layer that added it and the one that hid it', () => {
    expect(analysis.totals.wastedBytes).toBe(BLOB + KEY.length + 2 * BIG);
    expect(
      analysis.wasted.map((item) => [
        item.path,
        item.size,
        item.addedBy.layer,
        item.hiddenBy.layer,
        item.how,
      ]),
    ).toEqual([
      ['blob.bin', BLOB, 1, 2, 'deleted'],
      ['data/big.dat', BIG, 5, 6, 'replaced'],
      ['data/big.dat', BIG, 6, 7, 'replaced'],
      ['root/.ssh/id_rsa', KEY.length, 3, 4, 'deleted'],
    ]);
  });

  it('recoverable files: the deleted fake key is flagged as a secret and listed first', () => {
    const first = analysis.recoverable[0]!;
    expect(first.path).toBe('root/.ssh/id_rsa');
    expect(first.secret).toBe('SSH private key');
    expect(first.size).toBe(KEY.length);
    expect(analysis.recoverable.filter((item) => item.secret !== undefined)).toHaveLength(1);
    expect(analysis.recoverable.map((item) => item.path)).toContain('blob.bin');
  });

  it('copy-up: a chmod and a one-byte edit each re-ship the whole file', () => {
    expect(analysis.copyUps.map((item) => [item.path, item.size, item.at.layer, item.changes])).toEqual([
      ['data/big.dat', BIG, 6, ['mode']],
      ['data/big.dat', BIG, 7, ['content', 'mtime']],
    ]);
    expect(analysis.copyUps[1]!.changedBlocks).toBe(1);
    expect(analysis.copyUps[1]!.blocks).toBe(Math.ceil(BIG / 16384));
    expect(analysis.totals.copyUpBytes).toBe(2 * BIG);
  });

  it('efficiency: bytes that reach the final filesystem over bytes shipped', () => {
    const shipped = baseContent + BLOB + KEY.length + 3 * BIG;
    const final = baseContent + BIG;
    expect(analysis.totals.contentShipped).toBe(shipped);
    expect(analysis.totals.contentFinal).toBe(final);
    expect(analysis.totals.efficiency).toBeCloseTo(final / shipped, 12);
  });

  it('hints name the Dockerfile lines: install and clean up in one RUN', () => {
    expect(analysis.hints.map((hint) => [hint.kind, hint.line, hint.relatedLine, hint.bytes])).toEqual([
      ['cleanup-in-same-run', 2, 3, BLOB],
      ['cleanup-in-same-run', 4, 5, KEY.length],
    ]);
    expect(readFileSync(join(sandbox.dir, 'out', 'index.json'), 'utf8')).toContain('waste');
  });
});
