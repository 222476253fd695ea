import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeImage } from '../../src/analyze/analyze.js';
import { dockerfileHints } from '../../src/analyze/hints.js';
import type { ImageAnalysis } from '../../src/analyze/types.js';
import { buildImage } from '../../src/build/build-image.js';
import { parseDockerfile } from '../../src/parser/parse.js';
import { openImage } from '../../src/transport/images.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * docs/layers.md stays true: the base script makes a usable image, and the examples show the
 * figures the walkthrough states (5 MB wasted, a flagged key, two 2 MB copy-ups, the hints).
 */

const examples = resolve(import.meta.dirname, '..', '..', 'examples');
const enabled = isRoot && requireTool('busybox', 'busybox-static');

describe.skipIf(!enabled)('docs/layers.md examples', () => {
  let dir: string;
  let base: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-layers-examples-'));
    base = execFileSync('sh', [join(examples, 'make-busybox-base.sh'), join(dir, 'busybox')], {
      encoding: 'utf8',
    }).trim();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function analyzeExample(name: string, file = 'Dockerfile'): Promise<ImageAnalysis> {
    const context = join(examples, name);
    const dockerfilePath = join(context, file);
    const text = readFileSync(dockerfilePath);
    const output = `oci:${join(dir, name)}:${file.toLowerCase().replace(/[^a-z0-9]/g, '-')}`;
    await buildImage({
      contextDir: context,
      dockerfilePath,
      dockerfile: text,
      buildArgs: { BASE: base },
      dataDir: join(dir, 'data'),
      cacheDir: join(dir, 'cache'),
      network: 'none',
      outputs: [output],
    });
    const image = await openImage(output);
    try {
      const parsed = parseDockerfile(text, { file });
      return await analyzeImage(image, {
        dockerfile: { file, instructions: parsed.stages[parsed.stages.length - 1]!.instructions },
      });
    } finally {
      await image.close();
    }
  }

  it('make-busybox-base.sh writes a one-layer image with its history', async () => {
    expect(base).toBe(`oci:${join(dir, 'busybox')}:latest`);
    const image = await openImage(base);
    try {
      expect(image.manifest.value.layers).toHaveLength(1);
      expect(image.config.value.history?.[0]?.created_by).toBe(
        'busybox base (examples/make-busybox-base.sh)',
      );
    } finally {
      await image.close();
    }
  });

  it('layers-waste: 5 MB deleted in a later RUN still ships; one RUN ships none of it', async () => {
    const two = await analyzeExample('layers-waste');
    expect(two.totals.wastedBytes).toBe(5_000_000);
    expect(two.hints.map((hint) => [hint.kind, hint.line, hint.relatedLine])).toEqual([
      ['cleanup-in-same-run', 4, 5],
    ]);
    const one = await analyzeExample('layers-waste', 'Dockerfile.one-run');
    expect(one.totals.wastedBytes).toBe(0);
    expect(one.totals.efficiency).toBe(1);
  }, 60_000);

  it('layers-secret: the deleted key is recoverable and flagged', async () => {
    const analysis = await analyzeExample('layers-secret');
    const key = readFileSync(join(examples, 'layers-secret', 'id_rsa'));
    expect(analysis.recoverable).toEqual([
      expect.objectContaining({ path: 'root/.ssh/id_rsa', size: key.length, secret: 'SSH private key' }),
    ]);
  }, 60_000);

  it('layers-copyup: a chmod and a one-byte edit each ship the 2 MB file again', async () => {
    const analysis = await analyzeExample('layers-copyup');
    expect(analysis.copyUps.map((item) => [item.path, item.size])).toEqual([
      ['data.bin', 2_000_000],
      ['data.bin', 2_000_000],
    ]);
    expect(analysis.totals.wastedBytes).toBe(4_000_000);
  }, 60_000);

  it('layers-order: the context-first Dockerfile gets the order hint, the deps-first one does not', () => {
    // The hint comes from the Dockerfile alone; building would only wait for the install's sleep.
    const hintsOf = (file: string): [string, number, number][] => {
      const parsed = parseDockerfile(readFileSync(join(examples, 'layers-order', file)), { file });
      return dockerfileHints({ file, instructions: parsed.stages[0]!.instructions }, [], []).map((hint) => [
        hint.kind,
        hint.line,
        hint.relatedLine,
      ]);
    };
    expect(hintsOf('Dockerfile.context-first')).toEqual([['order-for-cache', 5, 6]]);
    expect(hintsOf('Dockerfile.deps-first')).toEqual([]);
  });
});
