import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 12: an output that cannot be written fails before the build starts (one line, exit 1,
 * nothing written, no hang), and every signal a terminal or service manager sends ends a
 * build within seconds, kills its RUN processes and leaves no temporary state.
 */
describe('output destinations are checked before the build starts', () => {
  let home: string;
  let ctx: string;
  const run = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [BIN, ...args], {
      env: { ...process.env, STRATUM_CACHE_DIR: join(home, 'cache'), STRATUM_DATA_DIR: join(home, 'data') },
      encoding: 'utf8',
      timeout: 60_000,
    });
  const expectRefused = (output: string, message: RegExp): void => {
    const result = run('build', ctx, '--output', output, '--progress', 'plain');
    expect(result.status, result.stderr).toBe(1);
    const lines = result.stderr.trim().split('\n');
    // Refused before any step: no step ran, and the error is the one line printed.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(result.stdout).toBe('');
  };

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'stratum-i12-out-'));
    ctx = join(home, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY a /a\n');
    writeFileSync(join(ctx, 'a'), 'a\n');
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('a path under /proc or /sys fails at once instead of hanging in mkdir', () => {
    expectRefused('oci:/proc/stratum-test/x:1', /^stratum: oci:\/proc\/stratum-test\/x:1: .*under \/proc/);
    expectRefused('oci-archive:/sys/stratum-test.tar', /under \/sys/);
    expect(existsSync('/proc/stratum-test')).toBe(false);
  });

  it('a parent that is a file is named as such', () => {
    writeFileSync(join(home, 'file'), 'x');
    expectRefused(`oci:${home}/file/layout:1`, /file\/layout:1: cannot create .*: .*\/file is a file/);
    expectRefused(`oci-archive:${home}/file/x.tar`, /\/file is a file/);
  });

  it('a directory that is not a layout is refused before the build, left as it was', () => {
    expectRefused(`oci:${ctx}:1`, /exists and is not an OCI image layout/);
    expect(readdirSync(ctx).sort()).toEqual(['Dockerfile', 'a']);
  });

  it.skipIf(!isRoot)('a read-only directory (a read-only mount) is refused', () => {
    const readonly = join(home, 'readonly');
    mkdirSync(readonly);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', readonly]);
    expect(mounted.status, String(mounted.stderr)).toBe(0);
    try {
      expectRefused(`oci:${readonly}/out:1`, /readonly is on a read-only filesystem/);
      expectRefused(`docker-archive:${readonly}/x.tar`, /read-only filesystem/);
    } finally {
      spawnSync('umount', [readonly]);
    }
  });

  it('a directory the caller may not write is refused (run as nobody when the tests run as root)', () => {
    // Root's directory, 0755: nobody may not write it, nor may root of nobody's user namespace
    // (where a rootless build runs), which maps nobody alone. (A directory of the caller's own
    // with mode 0555 is writable there, as it is for root: its owner may chmod it anyway.)
    // Not root: a directory of root's the system has.
    const locked = isRoot ? join(home, 'locked') : '/usr';
    if (isRoot) mkdirSync(locked, { mode: 0o755 });
    chmodSync(home, 0o755);
    const args = ['build', ctx, '--output', `oci:${locked}/out:1`, '--progress', 'plain'];
    const env = {
      ...process.env,
      HOME: home,
      STRATUM_CACHE_DIR: join(home, 'cache-nobody'),
      STRATUM_DATA_DIR: join(home, 'data-nobody'),
    };
    const result = isRoot
      ? spawnSync(
          'setpriv',
          ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, ...args],
          {
            env,
            encoding: 'utf8',
          },
        )
      : spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`${locked} is not writable`)),
    ]);
    expect(existsSync(join(locked, 'out'))).toBe(false);
  });

  it('an image name that is not lowercase says so', () => {
    const result = run('build', ctx, '-t', 'Stratum/Upper:1');
    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toBe(
      'stratum: invalid image reference "Stratum/Upper:1": repository names must be lowercase',
    );
  });
});

describe.skipIf(!isRoot)('SIGINT, SIGTERM and SIGHUP end a build within seconds', () => {
  let home: string;
  let baseRef: string;
  const cacheDir = (): string => join(home, 'cache');

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'stratum-i12-sig-'));
    const rootfs = join(home, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(home, 'base'), 'stratum-test/busybox:1').layout}:1`;
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal} during a RUN kills the step and removes the workspace`, async () => {
      const marker = `${4000 + Math.floor(Math.random() * 1000)}`;
      const ctx = join(home, `ctx-${signal}`);
      mkdirSync(ctx);
      writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo started && sleep ${marker}\n`);
      const out = join(home, `out-${signal}`);
      const child = spawn(
        process.execPath,
        [BIN, 'build', ctx, '--output', `oci:${out}:x`, '--network', 'none', '--progress', 'plain'],
        {
          env: { ...process.env, STRATUM_CACHE_DIR: cacheDir(), STRATUM_DATA_DIR: join(home, 'data') },
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
      for (let i = 0; i < 200 && !stderr.includes('| started'); i++)
        await new Promise((done) => setTimeout(done, 100));
      expect(stderr).toContain('| started');
      const sent = Date.now();
      child.kill(signal);
      const code = await exited;
      expect(Date.now() - sent).toBeLessThan(8_000);
      expect(code).not.toBe(0);
      expect(stderr).toContain(`interrupted`);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(join(cacheDir(), 'tmp'))).toEqual([]);
      const sleepers = spawnSync('pgrep', ['-f', `sleep ${marker}`], { encoding: 'utf8' });
      expect(sleepers.stdout.trim()).toBe('');
    });
  }

  it('an interruption after the first output was written names it (issue 26: "nothing was written")', async () => {
    const ctx = join(home, 'ctx-two-outputs');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nCOPY Dockerfile /\n`);
    const out = join(home, 'out-first');
    // The second output, a tar on standard output nobody reads, waits on the full pipe.
    const child = spawn(
      process.execPath,
      [BIN, 'build', ctx, '-o', `oci:${out}:1`, '-o', 'type=tar,dest=-', '--progress', 'plain'],
      {
        env: { ...process.env, STRATUM_CACHE_DIR: cacheDir(), STRATUM_DATA_DIR: join(home, 'data') },
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
    for (let i = 0; i < 300 && !stderr.includes(`oci:${out}:1 sha256:`); i++)
      await new Promise((done) => setTimeout(done, 100));
    expect(stderr).toContain(`oci:${out}:1 sha256:`);
    child.kill('SIGHUP');
    expect(await exited).toBe(1);
    const lines = stderr.trimEnd().split('\n');
    expect(lines.at(-1)).toBe(
      `stratum: build interrupted by SIGHUP after writing oci:${out}:1; nothing else was written`,
    );
    expect(existsSync(join(out, 'index.json'))).toBe(true);
  });
});
