import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface CacheLine {
  readonly kind: string;
  readonly hit?: boolean;
  readonly source?: string;
}

/**
 * `--cache-to type=local,dest=DIR` / `--cache-from type=local,src=DIR` through the CLI in dist/:
 * a build exports its cache into a directory, a build with an empty local cache reads it back.
 */
describe.skipIf(!isRoot)('stratum build: --cache-to/--cache-from type=local', () => {
  let dir: string;
  let baseRef: string;
  let ctx: string;

  const run = (args: readonly string[], cacheDir: string): Run => {
    const result = spawnSync(process.execPath, [BIN, ...args], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data'), STRATUM_CACHE_DIR: cacheDir },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };
  const cacheEvents = (stdout: string): CacheLine[] =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as CacheLine)
      .filter((event) => event.kind === 'cache');
  const events = (result: Run): CacheLine[] => [...cacheEvents(result.stdout), ...cacheEvents(result.stderr)];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-cache-local-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'data.txt'), 'one\n');
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${baseRef}\nRUN echo built > /built\nCOPY data.txt /data.txt\nRUN cat /data.txt /built > /both\n`,
    );
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports into a layout directory and a build with an empty local cache hits every step from it', () => {
    const dest = join(dir, 'shared-cache');
    const first = run(
      [
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'json',
        '--iidfile',
        join(dir, 'id-1'),
        '--cache-to',
        `type=local,dest=${dest}`,
      ],
      join(dir, 'cache-1'),
    );
    expect(first.status, first.stderr).toBe(0);
    expect(events(first).filter((event) => event.hit === true)).toHaveLength(0);
    // An OCI image layout holding the cache artifact under its tag.
    expect(JSON.parse(readFileSync(join(dest, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(readFileSync(join(dest, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    const tagged = index.manifests.filter(
      (entry) => entry.annotations?.['org.opencontainers.image.ref.name'] === 'stratum-cache',
    );
    expect(tagged).toHaveLength(1);
    const manifest = JSON.parse(
      readFileSync(join(dest, 'blobs/sha256', tagged[0]!.digest.slice(7)), 'utf8'),
    ) as { artifactType: string; layers: unknown[] };
    expect(manifest.artifactType).toBe('application/vnd.stratum.cache.v1+json');
    expect(manifest.layers.length).toBe(3);

    // Another (empty) local cache: every step comes from the directory, same image.
    const second = run(
      [
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'json',
        '--iidfile',
        join(dir, 'id-2'),
        '--cache-from',
        `type=local,src=${dest}`,
      ],
      join(dir, 'cache-2'),
    );
    expect(second.status, second.stderr).toBe(0);
    const hits = events(second);
    expect(hits).toHaveLength(3);
    for (const event of hits) {
      expect(event.hit).toBe(true);
      expect(event.source).toBe(`local:${dest}`);
    }
    expect(readFileSync(join(dir, 'id-2'), 'utf8')).toBe(readFileSync(join(dir, 'id-1'), 'utf8'));

    // Another build exported into the same directory: both builds' entries are kept (merged).
    const other = join(dir, 'ctx-other');
    mkdirSync(other);
    writeFileSync(join(other, 'Dockerfile'), `FROM ${baseRef}\nRUN echo other > /other\n`);
    const third = run(
      ['build', other, '--network', 'none', '--cache-to', `type=local,dest=${dest}`],
      join(dir, 'cache-3'),
    );
    expect(third.status, third.stderr).toBe(0);
    const fourth = run(
      ['build', ctx, '--network', 'none', '--progress', 'json', '--cache-from', `type=local,src=${dest}`],
      join(dir, 'cache-4'),
    );
    expect(fourth.status, fourth.stderr).toBe(0);
    expect(events(fourth).map((event) => event.hit)).toEqual([true, true, true]);
    const fifth = run(
      ['build', other, '--network', 'none', '--progress', 'json', '--cache-from', `type=local,src=${dest}`],
      join(dir, 'cache-5'),
    );
    expect(fifth.status, fifth.stderr).toBe(0);
    expect(events(fifth).map((event) => event.hit)).toEqual([true]);
  });

  it('a missing src directory is a warning and the build runs', () => {
    const missing = join(dir, 'no-such-cache');
    const result = run(
      ['build', ctx, '--network', 'none', '--cache-from', `type=local,src=${missing}`],
      join(dir, 'cache-7'),
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain(`cache local:${missing}: not used`);
  });

  it('a dest that is not an OCI layout is not written into: a usage error before the build, or a warning with ignore-error=true', () => {
    const notLayout = join(dir, 'not-a-layout');
    mkdirSync(notLayout);
    writeFileSync(join(notLayout, 'keep.txt'), 'mine\n');
    const refused = run(
      ['build', ctx, '--network', 'none', '--cache-to', `type=local,dest=${notLayout}`],
      join(dir, 'cache-8'),
    );
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`cache local:${notLayout}: exists and is not an OCI image layout`);
    expect(refused.stderr).not.toMatch(/RUN|=> /);
    const ignored = run(
      ['build', ctx, '--network', 'none', '--cache-to', `type=local,dest=${notLayout},ignore-error=true`],
      join(dir, 'cache-8'),
    );
    expect(ignored.status, ignored.stderr).toBe(0);
    expect(ignored.stderr).toContain(`cache local:${notLayout}: not exported`);
    expect(readFileSync(join(notLayout, 'keep.txt'), 'utf8')).toBe('mine\n');
  });

  it('a bad local form is a usage error naming the key', () => {
    const cases: [string, string, RegExp][] = [
      ['--cache-to', 'type=local', /dest= is missing/],
      ['--cache-to', `type=local,src=${dir}/x`, /"src" is for --cache-from/],
      ['--cache-from', `type=local,src=${dir}/x,colour=blue`, /attribute "colour" is not supported/],
      ['--cache-to', 'type=gha', /cache type "gha" is not supported/],
    ];
    for (const [flag, value, message] of cases) {
      const result = run(['build', ctx, flag, value], join(dir, 'cache-6'));
      expect(result.status, `${flag} ${value}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
