import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * `stratum build --check` / `--call=check|outline|targets` as buildx prints them, the
 * `# check=` directive and BUILDKIT_DOCKERFILE_CHECK, and the warnings of a normal build.
 * These builds are FROM scratch without RUN: nothing here needs root or namespaces.
 */
describe('build checks on the command line', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-checks-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  let contexts = 0;
  function stratum(dockerfile: string, args: readonly string[]) {
    const ctx = join(dir, `ctx-${contexts++}`);
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile);
    writeFileSync(join(ctx, 'a.txt'), 'a\n');
    const result = spawnSync(
      process.execPath,
      [BIN, 'build', ctx, '--cache-dir', join(dir, 'cache'), '--progress', 'plain', ...args],
      { encoding: 'utf8', env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data') } },
    );
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  const broken = 'FROM scratch as base\nCOPY a.txt /a.txt\n';

  it('--check prints each warning with its rule, URL and lines, builds nothing and exits 1', () => {
    const run = stratum(broken, ['--check']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe(
      [
        'Check complete, 1 warning has been found!',
        '',
        'WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        "'as' and 'FROM' keywords' casing do not match",
        'Dockerfile:1',
        '--------------------',
        '   1 | >>> FROM scratch as base',
        '   2 |     COPY a.txt /a.txt',
        '   3 |     ',
        '--------------------',
        '',
      ].join('\n'),
    );
    expect(run.stderr).not.toContain('#1');
  });

  it('--check exits 0 with "Check complete, no warnings found." for a clean file, and --call=check is the same', () => {
    const clean = stratum('FROM scratch AS base\nCOPY a.txt /a.txt\n', ['--check']);
    expect([clean.code, clean.stdout]).toEqual([0, 'Check complete, no warnings found.\n']);
    expect(stratum(broken, ['--call=check']).code).toBe(1);
  });

  it('# check=skip=… and BUILDKIT_DOCKERFILE_CHECK (which replaces the directive)', () => {
    expect(stratum(`# check=skip=FromAsCasing\n${broken}`, ['--check']).code).toBe(0);
    expect(stratum(`# check=skip=all\n${broken}`, ['--check']).code).toBe(0);
    const arg = stratum(`# check=skip=all\n${broken}`, [
      '--check',
      '--build-arg',
      'BUILDKIT_DOCKERFILE_CHECK=skip=MaintainerDeprecated',
    ]);
    expect(arg.code).toBe(1);
    expect(arg.stdout).toContain('WARNING: FromAsCasing');
  });

  it("--check --format json gives BuildKit's lint result", () => {
    const run = stratum(broken, ['--check', '--format', 'json']);
    expect(run.code).toBe(1);
    const result = JSON.parse(run.stdout) as {
      warnings: unknown[];
      sources: { filename: string; data: string }[];
    };
    expect(result.warnings).toEqual([
      {
        ruleName: 'FromAsCasing',
        description: "The 'as' keyword should match the case of the 'from' keyword",
        url: 'https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        detail: "'as' and 'FROM' keywords' casing do not match",
        location: { ranges: [{ start: { line: 1 }, end: { line: 1 } }] },
      },
    ]);
    expect(Buffer.from(result.sources[0]!.data, 'base64').toString()).toBe(broken);
  });

  it('a normal build prints the warnings at the end; with error=true it fails before building', () => {
    const out = join(dir, 'out-ok');
    const ok = stratum(broken, ['-o', `oci:${out}:1`]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain(
      "\n 1 warning found:\n - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\n",
    );
    const failed = stratum(`# check=error=true\n${broken}`, ['-o', `oci:${join(dir, 'out-failed')}:1`]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('lint violation found for rules: FromAsCasing');
    expect(failed.stderr).not.toContain('#1 ');
  });

  it('--call=targets and --call=outline, text and json', () => {
    const file =
      '# VERSION the tag\nARG VERSION=1\n# base the base stage\nFROM scratch AS base\nFROM base AS final\nARG MODE=fast\n';
    const targets = stratum(file, ['--call=targets']);
    expect([targets.code, targets.stdout]).toEqual([
      0,
      'TARGET          DESCRIPTION\nbase            the base stage\nfinal (default) \n',
    ]);
    const json = JSON.parse(stratum(file, ['--call', 'targets,format=json']).stdout) as {
      targets: { name: string; default?: boolean }[];
    };
    expect(json.targets.map((target) => [target.name, target.default ?? false])).toEqual([
      ['base', false],
      ['final', true],
    ]);
    const outline = stratum(file, ['--call=outline', '--target', 'final']);
    expect(outline.stdout).toBe('TARGET: final\n\nBUILD ARG   VALUE   DESCRIPTION\nMODE        fast    \n\n');
    const outlineJson = JSON.parse(stratum(file, ['--call=outline', '--format=json']).stdout) as {
      name: string;
      args: { name: string }[];
    };
    expect(outlineJson).toMatchObject({ name: 'final', args: [{ name: 'MODE', value: 'fast' }] });
  });
});
