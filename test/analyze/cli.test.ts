import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeImage } from '../../src/transport/images.js';
import { BASE, buildImage, type BuiltImage, type Step } from './images.js';

/** The built CLI (npm test builds dist/ first): output, exit codes and one-line errors. */
const bin = resolve(import.meta.dirname, '..', '..', 'bin', 'stratum.js');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'stratum-analyze-cli-'));

async function stratum(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data'), ...env },
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function layout(name: string, image: BuiltImage, tag = 'latest'): Promise<string> {
  const path = join(dir, name);
  await writeImage(image.source, `oci:${path}:${tag}`);
  return path;
}

const APP: Step = {
  createdBy: 'RUN /bin/sh -c make # buildkit',
  members: [{ name: 'app/run', content: 'binary', mode: 0o755 }],
};

let same: string;
let other: string;

beforeAll(async () => {
  same = await layout('same', await buildImage([BASE, { createdBy: 'ENV A=1' }, APP]));
  other = await layout(
    'other',
    await buildImage([
      BASE,
      { createdBy: 'ENV A=1' },
      { ...APP, members: [{ name: 'app/run', content: 'binary', mode: 0o700 }] },
    ]),
  );
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('stratum diff', () => {
  it('exits 0 for an image and itself', async () => {
    const result = await stratum(['diff', `oci:${same}:latest`, `oci:${same}:latest`]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('result: equivalent');
    expect(result.stderr).toBe('');
  });

  it('exits 1 and prints the differences under the step that made them', async () => {
    const result = await stratum(['diff', `oci:${same}:latest`, `oci:${other}:latest`]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(
      'step 0: base  (same)\nstep 1: ENV A=1  (same)\nstep 2: RUN /bin/sh -c make # buildkit\n  ~ app/run  mode 0755 → 0700\n',
    );
    expect(result.stdout).toContain('result: different (1 filesystem difference(s), 0 config difference(s))');
  });

  it('--json gives the same comparison for tools', async () => {
    const result = await stratum(['diff', '--json', `oci:${same}:latest`, `oci:${other}:latest`]);
    expect(result.code).toBe(1);
    const diff = JSON.parse(result.stdout) as { equivalent: boolean; steps: { differences: unknown[] }[] };
    expect(diff.equivalent).toBe(false);
    expect(diff.steps[2]!.differences).toEqual([
      { kind: 'differs', path: 'app/run', fields: ['mode'], a: { mode: '0755' }, b: { mode: '0700' } },
    ]);
  });

  it('entries re-emitted unchanged in one layer only: exit 0 by default, 1 with --strict', async () => {
    const lockfile = { name: 'app/lock', content: 'l' };
    const a = await layout(
      'reemit-a',
      await buildImage([
        BASE,
        { ...APP, members: [...APP.members!, lockfile] },
        { ...APP, members: [lockfile] },
      ]),
    );
    const b = await layout(
      'reemit-b',
      await buildImage([BASE, { ...APP, members: [...APP.members!, lockfile] }, { ...APP, members: [] }]),
    );
    const relaxed = await stratum(['diff', `oci:${a}:latest`, `oci:${b}:latest`]);
    expect(relaxed.code).toBe(0);
    expect(relaxed.stdout).toContain("  = app/lock  re-emitted unchanged in A's layer only (1 B)");
    expect(relaxed.stdout).toContain(
      'result: equivalent filesystems and config; the layers differ in 1 entry',
    );
    const strict = await stratum(['diff', '--strict', `oci:${a}:latest`, `oci:${b}:latest`]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toBe(relaxed.stdout);
    // A real difference still exits 1 without --strict.
    expect((await stratum(['diff', `oci:${same}:latest`, `oci:${other}:latest`])).code).toBe(1);
  });

  it('a missing argument is a usage error (exit 2)', async () => {
    const result = await stratum(['diff', `oci:${same}:latest`]);
    expect(result.code).toBe(2);
  });
});

describe('stratum analyze and du', () => {
  it('analyze --json reports layers, waste and a deleted secret', async () => {
    const path = await layout(
      'secret',
      await buildImage([
        BASE,
        {
          createdBy: 'COPY .npmrc /root/.npmrc',
          members: [{ name: 'root/.npmrc', content: '//registry/:_authToken=abc\n' }],
        },
        {
          createdBy: 'RUN rm /root/.npmrc',
          members: [{ name: 'root/', type: 'directory', mode: 0o700 }, { name: 'root/.wh..npmrc' }],
        },
      ]),
    );
    const result = await stratum(['analyze', '--json', `oci:${path}:latest`]);
    expect(result.code).toBe(0);
    const analysis = JSON.parse(result.stdout) as {
      layers: unknown[];
      recoverable: { path: string; secret?: string; size: number }[];
      totals: { wastedBytes: number };
    };
    expect(analysis.layers).toHaveLength(3);
    expect(analysis.totals.wastedBytes).toBe(27);
    expect(analysis.recoverable).toEqual([
      expect.objectContaining({ path: 'root/.npmrc', secret: 'npm registry credentials', size: 27 }),
    ]);
    const text = await stratum(['analyze', `oci:${path}:latest`]);
    expect(text.stdout).toContain('!!! root/.npmrc  27 B  SECRET? npm registry credentials');
  });

  it('analyze --html writes the page; an unwritable path is a one-line error', async () => {
    const page = join(dir, 'page.html');
    const result = await stratum(['analyze', '--html', page, `oci:${same}:latest`]);
    expect(result.code).toBe(0);
    expect(readFileSync(page, 'utf8')).toContain('<svg id="layer-chart"');
    const bad = await stratum([
      'analyze',
      '--html',
      join(dir, 'no', 'such', 'dir', 'x.html'),
      `oci:${same}:latest`,
    ]);
    expect(bad.code).toBe(1);
    // Checked before the analysis, as every output path is (oci/output-path.ts).
    expect(bad.stderr).toMatch(/^stratum: --html .*x\.html: directory .*\/dir does not exist\n$/);
  });

  it('du: each image as summed up, and shared blobs counted once', async () => {
    const store = join(dir, 'store');
    const one = await buildImage([BASE, APP]);
    const two = await buildImage([BASE, { ...APP, members: [{ name: 'app/other', content: 'x' }] }]);
    await writeImage(one.source, `oci:${store}:one`);
    await writeImage(two.source, `oci:${store}:two`);
    const result = await stratum(['du', '--json', `oci:${store}`]);
    expect(result.code).toBe(0);
    const usage = JSON.parse(result.stdout) as {
      images: { name: string; size: number; unique: number; shared: number }[];
      summedSize: number;
      referencedSize: number;
      onDiskSize: number;
    };
    const sizeOf = (image: BuiltImage): number =>
      image.source.descriptor.size +
      image.source.manifest.value.config.size +
      image.source.manifest.value.layers.reduce((total, layer) => total + layer.size, 0);
    const baseLayer = one.source.manifest.value.layers[0]!.size;
    expect(usage.images.map((image) => [image.name, image.size, image.shared])).toEqual([
      ['one', sizeOf(one), baseLayer],
      ['two', sizeOf(two), baseLayer],
    ]);
    expect(usage.summedSize).toBe(sizeOf(one) + sizeOf(two));
    expect(usage.referencedSize).toBe(sizeOf(one) + sizeOf(two) - baseLayer);
    expect(usage.onDiskSize).toBe(usage.referencedSize);
    const text = await stratum(['du', `oci:${store}`]);
    expect(text.stdout).toContain('Blobs they use, once each:');
  });

  it('du of an empty local store reports nothing, exit 0', async () => {
    const result = await stratum(['du'], { STRATUM_DATA_DIR: join(dir, 'empty-data') });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Sum of image sizes:        0 B (0 image(s)');
  });
});

describe('bad input: one-line errors, exit 1', () => {
  function expectOneLine(result: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
    expect(result.code).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  }

  it('an image that does not exist', async () => {
    expectOneLine(
      await stratum(['analyze', `oci:${join(dir, 'nope')}:x`]),
      /^stratum: oci:.*nope.*does not exist/,
    );
  });

  it('a truncated layer blob', async () => {
    const path = await layout('truncated', await buildImage([BASE, APP]));
    const image = await buildImage([BASE, APP]);
    const layer = image.source.manifest.value.layers[0]!;
    truncateSync(join(path, 'blobs', 'sha256', layer.digest.slice(7)), Math.floor(layer.size / 2));
    expectOneLine(await stratum(['analyze', `oci:${path}:latest`]), /^stratum: .*(sha256|layer)/);
  });

  it('a layer that is not a tar', async () => {
    const garbage = Buffer.from('this is not a tar archive, just some words. '.repeat(40));
    const path = await layout('garbage', await buildImage([{ createdBy: 'junk', rawTar: garbage }]));
    expectOneLine(
      await stratum(['analyze', `oci:${path}:latest`]),
      /^stratum: oci:.*: layer 1 \(sha256:[a-f0-9]{64}\): unreadable layer tar: /,
    );
  });

  it('an image without history', async () => {
    const path = await layout('nohistory', await buildImage([BASE], { history: null }));
    expectOneLine(await stratum(['analyze', `oci:${path}:latest`]), /the config has no history/);
    expectOneLine(
      await stratum(['diff', `oci:${path}:latest`, `oci:${same}:latest`]),
      /the config has no history/,
    );
  });

  it('history that disagrees with the layer count', async () => {
    const path = await layout(
      'badhistory',
      await buildImage([BASE, APP], {
        history: [{ created_by: 'one' }, { created_by: 'two', empty_layer: true }],
      }),
    );
    expectOneLine(
      await stratum(['analyze', `oci:${path}:latest`]),
      /^stratum: oci:.*: history lists 1 layers but the manifest has 2$/m,
    );
  });

  it('a docker-daemon reference with no daemon', async () => {
    const result = await stratum(['diff', 'docker-daemon:nothing:here', `oci:${same}:latest`], {
      DOCKER_HOST: `unix://${join(dir, 'no-daemon.sock')}`,
    });
    expectOneLine(result, /^stratum: docker-daemon:nothing:here: (docker save failed|no docker command)/);
  });

  it('an unknown option is a usage error (exit 2)', async () => {
    expect((await stratum(['analyze', '--bogus', `oci:${same}:latest`])).code).toBe(2);
  });
});
