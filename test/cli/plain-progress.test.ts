import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 26: in CI logs (stderr not a terminal: `--progress auto` is plain), the output of stages
 * that build side by side interleaved as bare `| bravo-1`, `| alpha-1` lines under the wrong
 * header. Every line of a step now starts with its number, as in BuildKit's plain output.
 */
describe.skipIf(!isRoot)('plain progress gives every line its step', () => {
  let home: string;
  let baseRef: string;

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'stratum-plain-'));
    const rootfs = join(home, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(home, 'base'), 'stratum-test/busybox:1').layout}:1`;
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('two stages printing side by side: each output line carries the number of its own step', () => {
    const ctx = join(home, 'ctx');
    mkdirSync(ctx);
    const stage = (name: string): string =>
      `FROM ${baseRef} AS ${name}\nRUN for i in 1 2 3 4; do echo ${name}-$i; sleep 0.2; done; touch /${name}\n`;
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `${stage('alpha')}${stage('bravo')}FROM ${baseRef}\nCOPY --from=alpha /alpha /\nCOPY --from=bravo /bravo /\n`,
    );
    // No --progress: auto, and stderr is a pipe.
    const built = spawnSync(process.execPath, [BIN, 'build', ctx, '--network', 'none'], {
      env: { ...process.env, STRATUM_CACHE_DIR: join(home, 'cache'), STRATUM_DATA_DIR: join(home, 'data') },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(built.status, built.stderr).toBe(0);
    const lines = built.stderr.split('\n');
    const headerOf = (name: string): string => {
      const header = lines.find((line) => line.includes(`[${name} 1/1] RUN`));
      expect(header, built.stderr).toMatch(/^#\d+ /);
      return header!.split(' ')[0]!;
    };
    const ids = { alpha: headerOf('alpha'), bravo: headerOf('bravo') };
    expect(ids.alpha).not.toBe(ids.bravo);
    for (const [name, id] of Object.entries(ids)) {
      const output = lines.filter((line) => line.includes(`${name}-`) && !line.includes('RUN for'));
      expect(output, built.stderr).toHaveLength(4);
      for (const [i, line] of output.entries())
        expect(line).toMatch(new RegExp(`^${id} \\d+\\.\\d{3} \\| ${name}-${i + 1}$`));
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${id} DONE \\d+\\.\\d\\ds`)));
    }
    // Every line of a step names one: no bare output or status line is left.
    expect(lines.filter((line) => /^\s+(\||=>)/.test(line))).toEqual([]);
  });
});
