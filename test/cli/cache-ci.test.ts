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

/**
 * The CI story through the CLI in dist/, each run with a cache directory of its own as a fresh
 * runner has: a build exports its cache with its cache mounts into a directory (what a CI cache
 * saves), the next build on an empty cache directory imports it, sees the cache mount's
 * contents, and `--explain` says which source file made a step miss; `stratum cache diff` says
 * the same about two exported caches.
 */
describe.skipIf(!isRoot)('stratum build: cache mounts and --explain through an imported cache', () => {
  let dir: string;
  let ctx: string;

  const run = (args: readonly string[], cacheDir: string): Run => {
    const result = spawnSync(process.execPath, [BIN, ...args], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data'), STRATUM_CACHE_DIR: cacheDir },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-cache-ci-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    const base = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    ctx = join(dir, 'ctx');
    mkdirSync(join(ctx, 'src'), { recursive: true });
    writeFileSync(join(ctx, 'deps.txt'), 'left-pad\n');
    writeFileSync(join(ctx, 'src/app.js'), "console.log('one');\n");
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM ${base}`,
        'COPY deps.txt /deps.txt',
        // A package manager's cache: filled once, read by every later install.
        'RUN --mount=type=cache,target=/root/.cache/pkg ' +
          'for d in $(cat /deps.txt); do [ -f /root/.cache/pkg/$d ] && echo "$d from cache" >> /installed || { echo "$d downloaded" >> /installed; echo tarball > /root/.cache/pkg/$d; }; done',
        'COPY src/ /app/',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports with mounts=true; a fresh runner sees the mount and is told which file changed', () => {
    const main = join(dir, 'ci-cache-main');
    const first = run(
      [
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'plain',
        '--cache-to',
        `type=local,dest=${main},mounts=true`,
      ],
      join(dir, 'runner-1'),
    );
    expect(first.status, first.stderr).toBe(0);

    // The branch: another dependency (the install runs again) and a changed source file.
    writeFileSync(join(ctx, 'deps.txt'), 'left-pad\nright-pad\n');
    writeFileSync(join(ctx, 'src/app.js'), "console.log('two');\n");
    const out = join(dir, 'out');
    const branch = join(dir, 'ci-cache-branch');
    const second = run(
      [
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'plain',
        '--explain',
        '--cache-from',
        `type=local,src=${main}`,
        '--cache-to',
        `type=local,dest=${branch},mounts=true`,
        '-o',
        `type=local,dest=${out}`,
      ],
      join(dir, 'runner-2'),
    );
    expect(second.status, second.stderr).toBe(0);
    // The install found left-pad in the cache mount the first runner filled.
    expect(readFileSync(join(out, 'installed'), 'utf8')).toBe('left-pad from cache\nright-pad downloaded\n');
    const text = second.stdout + second.stderr;
    expect(text).toMatch(
      /warning: cache mount id=\/root\/\.cache\/pkg uid=0 gid=0 mode=755: restored from local:/,
    );
    expect(text).toMatch(/#\d+ {3}compared with: local:\S+ci-cache-main \(its closest entry, exported \S+\)/);
    expect(text).toMatch(
      /#\d+ {3}changed: COPY: context file deps\.txt changed \(content sha256:[0-9a-f]{12} → sha256:[0-9a-f]{12}\)/,
    );

    // The same question without building: what of the branch's build is not in main's cache.
    const diff = run(
      ['cache', 'diff', `type=local,src=${main}`, `type=local,src=${branch}`],
      join(dir, 'runner-3'),
    );
    expect(diff.status, diff.stderr).toBe(0);
    const lines = diff.stdout.trim().split('\n');
    expect(lines[0]).toBe('Dockerfile');
    expect(
      lines.filter((line) => /^0\/\d+ +(in base|MISS) /.test(line)).map((line) => line.split(/ +/)[1]),
    ).toEqual(['MISS', 'MISS', 'MISS']);
    expect(diff.stdout).toMatch(/changed: COPY: context file deps\.txt changed \(content sha256:/);
    expect(diff.stdout).toMatch(/changed: parent changed \(step 1 missed\)/);
    expect(lines.at(-1)).toBe(`3 of 3 steps would miss with --cache-from local:${main}`);

    const json = run(
      ['cache', 'diff', `type=local,src=${branch}`, `type=local,src=${branch}`, '--json'],
      join(dir, 'runner-3'),
    );
    expect(json.status, json.stderr).toBe(0);
    const result = JSON.parse(json.stdout) as { steps: { inBase: boolean }[] };
    expect(result.steps.map((step) => step.inBase)).toEqual([true, true, true]);
  });

  it('cache diff of a cache that cannot be read is one line and exit 1', () => {
    const result = run(
      [
        'cache',
        'diff',
        `type=local,src=${join(dir, 'nothing-here')}`,
        `type=local,src=${join(dir, 'nor-here')}`,
      ],
      join(dir, 'runner-4'),
    );
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/nothing-here/);
  });
});
