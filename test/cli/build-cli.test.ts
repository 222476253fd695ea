import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');
const REPO = resolve(import.meta.dirname, '../..');

/**
 * The command line as a user meets it on a fresh machine: default data and cache directories
 * (under a fresh HOME), the README's first build, -t into the local store, images, inspect,
 * cache ls/du/prune, and Ctrl-C.
 */
describe.skipIf(!isRoot)('stratum build from the command line, with default directories', () => {
  let home: string;
  let scratch: string;
  let baseRef: string;
  const env = (): NodeJS.ProcessEnv => {
    const defaults = new Set(['STRATUM_DATA_DIR', 'STRATUM_CACHE_DIR', 'XDG_DATA_HOME', 'XDG_CACHE_HOME']);
    const kept = Object.entries(process.env).filter(([name]) => !defaults.has(name));
    return { ...Object.fromEntries(kept), HOME: home, TMPDIR: scratch };
  };
  /** Temporary files of builds: rootfs workspaces (cache dir) and sandbox scratch (TMPDIR). */
  const leftovers = (): string[] => [
    ...readdirSync(scratch).filter((name) => name.startsWith('stratum-')),
    ...readdirSync(join(home, '.cache/stratum/tmp')),
  ];
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [BIN, ...args], { env: env(), encoding: 'utf8', cwd: REPO });

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'stratum-home-'));
    scratch = mkdtempSync(join(tmpdir(), 'stratum-tmp-'));
    const rootfs = join(home, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    const base = writeBaseImage(rootfs, join(home, 'base'), 'stratum-test/busybox:1');
    baseRef = `oci:${base.layout}:1`;
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  it("the README's first build writes an OCI layout that inspect reads", () => {
    const out = join(home, 'hello-oci');
    const built = run('build', 'examples/hello', '--output', `oci:${out}:latest`);
    expect(built.status, built.stderr).toBe(0);
    expect(built.stderr).not.toMatch(/error|warning/i);
    const inspected = run('inspect', `oci:${out}:latest`);
    expect(inspected.status).toBe(0);
    expect(inspected.stdout).toContain('COPY hello.txt /hello.txt');
  });

  it('-t stores the image under the default data directory; images, inspect and cache commands see it', () => {
    const ctx = join(home, 'ctx-tag');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo tagged > /tagged\n`);
    const built = run('build', ctx, '-t', 'myapp:1', '--network', 'none', '--progress', 'plain');
    expect(built.status, built.stderr).toBe(0);
    expect(built.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(readdirSync(join(home, '.local/share/stratum/images'))).toContain('index.json');
    expect(readdirSync(join(home, '.cache/stratum'))).toContain('entries');

    const images = run('images');
    expect(images.stdout).toMatch(/myapp:1\s+[0-9a-f]{12}/);
    expect(run('inspect', 'myapp:1').stdout).toContain('RUN /bin/sh -c echo tagged > /tagged');

    const ls = run('cache', 'ls');
    expect(ls.stdout).toContain('RUN echo tagged > /tagged');
    // The README build's COPY and this RUN.
    expect(run('cache', 'du').stdout).toMatch(/entries:\s+2 \(2 with a layer\)/);
    // Everything is younger than a day: no entry goes; blobs nothing refers to do.
    expect(run('cache', 'prune', '--older-than', '24h').stdout).toMatch(/removed 0 entries/);
    expect(run('cache', 'prune', '--keep-storage', '0').stdout).toMatch(/removed 2 entries/);
    expect(run('cache', 'ls').stdout).toContain('0 entries');
    // The stored image keeps every blob it needs.
    expect(run('inspect', 'myapp:1').status).toBe(0);
    expect(run('cache', 'prune', '--keep-storage', 'lots').status).toBe(2);
  });

  it('a failing RUN exits 1 naming the stage, step, line and exit code, and writes nothing', () => {
    const ctx = join(home, 'ctx-fail');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo first\nRUN echo oops >&2 && exit 7\n`);
    const out = join(home, 'fail-out');
    const built = run('build', ctx, '--output', `oci:${out}:x`, '--network', 'none', '--progress', 'quiet');
    expect(built.status).toBe(1);
    expect(built.stderr).toContain('stage 0, step 2/2');
    expect(built.stderr).toContain('Dockerfile:3');
    expect(built.stderr).toContain('exit code 7');
    expect(built.stderr).toContain('| oops');
    expect(built.stderr).not.toMatch(/\n\s+at /);
    expect(() => readdirSync(out)).toThrow();
    expect(leftovers()).toEqual([]);
  });

  it('bad input gets a one-line located error: unknown instruction, missing Dockerfile, bad flag', () => {
    const ctx = join(home, 'ctx-bad');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUNN echo\n`);
    const bad = run('build', ctx);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('Dockerfile:2:1: error: unknown instruction "RUNN" (did you mean "RUN"?)');
    const missing = run('build', join(home, 'nope'));
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    const flag = run('build', ctx, '--bogus');
    expect(flag.status).toBe(2);
    const target = run('build', ctx.replace('ctx-bad', 'ctx-tag'), '--target', 'nosuch');
    expect(target.status).toBe(2);
    expect(target.stderr).toContain('--target nosuch');
  });

  it('Ctrl-C stops the build promptly and leaves no temporary directory or process behind', async () => {
    const ctx = join(home, 'ctx-interrupt');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo started && sleep 123 && echo never\n`);
    const out = join(home, 'interrupt-out');
    const child = spawn(
      process.execPath,
      [BIN, 'build', ctx, '--output', `oci:${out}:x`, '--network', 'none', '--progress', 'plain'],
      {
        env: env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((done) =>
      child.once('exit', (code) => {
        done(code);
      }),
    );
    for (let i = 0; i < 100 && !stderr.includes('| started'); i++)
      await new Promise((done) => setTimeout(done, 100));
    expect(stderr).toContain('| started');
    const started = Date.now();
    child.kill('SIGINT');
    const code = await exited;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(code).toBe(1);
    expect(stderr).toContain('interrupted');
    expect(() => readdirSync(out)).toThrow();
    expect(leftovers()).toEqual([]);
    const sleepers = spawnSync('pgrep', ['-f', 'sleep 123'], { encoding: 'utf8' });
    expect(sleepers.stdout.trim()).toBe('');
  });
});
