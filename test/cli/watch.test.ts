import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 25: `stratum build --watch` stays running and rebuilds on every change of the context.
 * A real `bin/stratum.js build --watch` child process on a busybox base. No timing assertions:
 * the debounce is checked by counting builds, and "no rebuild" by what the next build says
 * triggered it (a change that was dropped is never named).
 */
const WAITING = '[watch] waiting for changes (Ctrl-C stops)';

/** Whether a `sleep SECONDS` runs anywhere (a step's command; SECONDS unique to one test). */
function sleeping(seconds: string): boolean {
  return readdirSync('/proc').some((name) => {
    if (!/^\d+$/.test(name)) return false;
    try {
      return readFileSync(`/proc/${name}/cmdline`, 'utf8') === `sleep\0${seconds}\0`;
    } catch {
      return false; // gone meanwhile
    }
  });
}

class Watch {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((done) => {
      child.once('exit', (code, signal) => {
        done({ code, signal });
      });
    });
  }

  /** Builds finished (each ends with the waiting line). */
  get builds(): number {
    return this.stderr.split('\n').filter((line) => line === WAITING).length;
  }

  /** What triggered each rebuild, as its `[watch] … : rebuilding` line says. */
  get triggers(): string[] {
    return this.stderr
      .split('\n')
      .filter((line) => line.startsWith('[watch] ') && line.endsWith(': rebuilding'))
      .map((line) => line.slice('[watch] '.length, -': rebuilding'.length));
  }

  get digests(): string[] {
    return this.stdout.split('\n').filter((line) => line.startsWith('sha256:'));
  }

  async until(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
    const start = Date.now();
    while (!condition()) {
      if (Date.now() - start > timeoutMs || this.child.exitCode !== null)
        throw new Error(`waiting for ${what}; stderr:\n${this.stderr}\nstdout:\n${this.stdout}`);
      await new Promise((done) => setTimeout(done, 25));
    }
  }

  /** Waits for build number `n` to finish. */
  built(n: number): Promise<void> {
    return this.until(`build ${n}`, () => this.builds >= n);
  }

  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null) this.child.kill('SIGINT');
    return this.exited;
  }
}

describe.skipIf(!isRoot)('stratum build --watch', () => {
  let home: string;
  let baseRef: string;
  let contexts = 0;
  const running: Watch[] = [];
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    STRATUM_CACHE_DIR: join(home, 'cache'),
    STRATUM_DATA_DIR: join(home, 'data'),
    SOURCE_DATE_EPOCH: '1700000000',
  });
  const context = (files: Record<string, string>): string => {
    const dir = join(home, `ctx-${contexts++}`);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    return dir;
  };
  const watch = (ctx: string, ...args: string[]): Watch => watchWith({}, ctx, ...args);
  const watchWith = (extraEnv: NodeJS.ProcessEnv, ctx: string, ...args: string[]): Watch => {
    const child = spawn(
      process.execPath,
      [BIN, 'build', '--watch', ctx, '--network', 'none', '--progress', 'plain', ...args],
      { env: { ...env(), ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const started = new Watch(child);
    running.push(started);
    return started;
  };

  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'stratum-watch-'));
    const rootfs = join(home, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    baseRef = `oci:${writeBaseImage(rootfs, join(home, 'base'), 'stratum-test/busybox:1').layout}:1`;
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((started) => started.stop()));
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('an edit gives a new image with the change, the same image a one-shot build of the context gives', async () => {
    const ctx = context({
      Dockerfile: `FROM ${baseRef}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copy.txt\n`,
      'hello.txt': 'one\n',
    });
    const files = join(home, 'files-edit');
    const w = watch(ctx, '-o', `type=local,dest=${files}`, '-o', `oci:${join(home, 'layout-edit')}:1`);
    await w.built(1);
    expect(readFileSync(join(files, 'copy.txt'), 'utf8')).toBe('one\n');
    writeFileSync(join(ctx, 'hello.txt'), 'two\n');
    await w.built(2);
    expect(w.triggers).toEqual(['hello.txt changed']);
    expect(readFileSync(join(files, 'copy.txt'), 'utf8')).toBe('two\n');
    expect(w.digests).toHaveLength(2);
    expect(w.digests[1]).not.toBe(w.digests[0]);
    // The rebuild's progress is whole: what it did before the burst was over (its stage, the
    // start of a step that read the context ahead of the quiet) is shown once it is announced.
    const rebuild = w.stderr.slice(w.stderr.indexOf('hello.txt changed: rebuilding'));
    expect(rebuild).toMatch(/^#stage 0 FROM /m);
    expect(rebuild).toMatch(/^#\d+ \[0 1\/2\] COPY hello\.txt \/hello\.txt$/m);
    // A one-shot build of the same context, with a cache of its own: the same image.
    const oneShot = spawnSync(
      process.execPath,
      [
        BIN,
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'quiet',
        '--cache-dir',
        join(home, 'other-cache'),
      ],
      { env: env(), encoding: 'utf8' },
    );
    expect(oneShot.status, oneShot.stderr).toBe(0);
    expect(oneShot.stdout.trim()).toBe(w.digests[1]);
    const index = JSON.parse(readFileSync(join(home, 'layout-edit', 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(index.manifests.map((m) => m.digest)).toContain(w.digests[1]);
    // A same-size write while a build runs (maybe within one timestamp tick of the read): the
    // build after it has the last content, whatever the stat cache remembered.
    writeFileSync(join(ctx, 'hello.txt'), 'six\n');
    await w.until('the third build to start', () => w.triggers.length === 2);
    writeFileSync(join(ctx, 'hello.txt'), 'ten\n');
    await w.built(4);
    expect(readFileSync(join(files, 'copy.txt'), 'utf8')).toBe('ten\n');
  });

  it('several files written at once give one rebuild; a new directory is watched', async () => {
    const ctx = context({ Dockerfile: `FROM ${baseRef}\nCOPY . /src\n`, 'a.txt': 'a' });
    // A wider quiet time than the default 15 ms: on a loaded machine the test's own four writes
    // could otherwise be scheduled that far apart (the count, not the time, is what is checked).
    const w = watchWith({ STRATUM_WATCH_QUIET_MS: '400' }, ctx);
    await w.built(1);
    for (const name of ['a.txt', 'b.txt', 'c.txt', 'd.txt']) writeFileSync(join(ctx, name), `${name} 2`);
    await w.built(2);
    // Anything more would have been a second rebuild: a later change shows whether one was queued.
    mkdirSync(join(ctx, 'sub'));
    await w.built(3);
    writeFileSync(join(ctx, 'sub', 'new.txt'), 'new');
    await w.built(4);
    expect(w.triggers).toEqual([
      '4 paths changed (a.txt, b.txt, c.txt, …)',
      'sub changed',
      'sub/new.txt changed',
    ]);
  });

  it('a change once a build has read the context ahead of the quiet starts it again: one rebuild, the last content', async () => {
    const ctx = context({
      Dockerfile: `FROM ${baseRef}\nCOPY a.txt /a.txt\nRUN sleep 0.437 && cat /a.txt > /copy.txt\n`,
      'a.txt': 'one\n',
    });
    const files = join(home, 'files-ahead');
    // A long quiet time: the build reads a.txt (its RUN starts) long before the burst is over.
    const w = watchWith({ STRATUM_WATCH_QUIET_MS: '2000' }, ctx, '-o', `type=local,dest=${files}`);
    await w.built(1);
    // Each write is one event in the context (a file written beside it, renamed over a.txt), so
    // the build that reads ahead is the burst's first, whatever the load between two syscalls.
    const replace = (content: string): void => {
      writeFileSync(join(home, 'a.txt.new'), content);
      renameSync(join(home, 'a.txt.new'), join(ctx, 'a.txt'));
    };
    replace('two\n');
    await w.until('the RUN of the build that read ahead', () => sleeping('0.437'));
    replace('three\n');
    await w.built(2);
    mkdirSync(join(ctx, 'later'));
    await w.built(3);
    expect(readFileSync(join(files, 'copy.txt'), 'utf8')).toBe('three\n');
    // One rebuild for both writes (the first was aborted and started again), then the next.
    expect(w.triggers).toEqual(['a.txt changed', 'later changed']);
    expect(w.digests).toHaveLength(3);
  });

  it('files .dockerignore excludes trigger nothing, and a new .dockerignore changes what does', async () => {
    const ctx = context({
      Dockerfile: `FROM ${baseRef}\nCOPY . /src\n`,
      '.dockerignore': '*.log\nnode_modules\n',
      'app.js': '1',
      'node_modules/dep/index.js': 'x',
    });
    const w = watch(ctx);
    await w.built(1);
    writeFileSync(join(ctx, 'debug.log'), 'ignored');
    writeFileSync(join(ctx, 'node_modules', 'dep', 'index.js'), 'ignored too');
    mkdirSync(join(ctx, 'node_modules', 'other'));
    writeFileSync(join(ctx, 'node_modules', 'other', 'x.js'), 'ignored too');
    writeFileSync(join(ctx, 'app.js'), '2');
    await w.built(2);
    // Only the file the context holds was named: the ignored ones started nothing.
    expect(w.triggers).toEqual(['app.js changed']);
    writeFileSync(join(ctx, '.dockerignore'), '*.log\nnode_modules\nsecret.txt\n');
    await w.built(3);
    writeFileSync(join(ctx, 'secret.txt'), 'now ignored');
    writeFileSync(join(ctx, 'debug.log'), 'still ignored');
    writeFileSync(join(ctx, 'app.js'), '3');
    await w.built(4);
    expect(w.triggers).toEqual(['app.js changed', '.dockerignore changed', 'app.js changed']);
  });

  it('a broken Dockerfile or a failing RUN prints its error and the loop keeps watching; fixing it rebuilds', async () => {
    const cacheDir = join(home, 'cache-broken');
    const ctx = context({ Dockerfile: `FROM ${baseRef}\nRUN true\n` });
    const w = watch(ctx, '--cache-dir', cacheDir);
    await w.built(1);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUNN true\n`);
    await w.built(2);
    expect(w.stderr).toMatch(/^stratum: .*Dockerfile:2.*RUNN/m);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN exit 3\n`);
    await w.built(3);
    expect(w.stderr).toMatch(/^stratum: .*exit(ed with)? (code )?3/m);
    // The failed step's overlay is gone while the loop waits: nothing stays mounted between builds.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(cacheDir);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo fixed > /fixed\n`);
    await w.built(4);
    expect(w.digests).toHaveLength(2);
    expect(w.child.exitCode).toBe(null);
    expect(await w.stop()).toEqual({ code: 130, signal: null });
  });

  it('SIGINT during a build ends the process (130) with nothing mounted and no temporary directory left', async () => {
    const cacheDir = join(home, 'cache-interrupt');
    const marker = `${5000 + Math.floor(Math.random() * 1000)}`;
    const ctx = context({ Dockerfile: `FROM ${baseRef}\nCOPY go /go\n`, go: '0' });
    const w = watch(ctx, '--cache-dir', cacheDir, '-o', `oci:${join(home, 'layout-interrupt')}:1`);
    await w.built(1);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${baseRef}\nCOPY go /go\nRUN echo started && sleep ${marker}\n`,
    );
    await w.until('the RUN to start', () => w.stderr.includes('| started'));
    w.child.kill('SIGINT');
    expect(await w.exited).toEqual({ code: 130, signal: null });
    expect(w.stderr).toContain('[watch] stopped by SIGINT');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(cacheDir);
    expect(readdirSync(join(cacheDir, 'tmp'))).toEqual([]);
    expect(readdirSync(join(cacheDir, 'overlay', 'sessions'))).toEqual([]);
    expect(spawnSync('pgrep', ['-f', `sleep ${marker}`], { encoding: 'utf8' }).stdout.trim()).toBe('');
    // The output holds the last finished build, never a half-written one.
    const index = JSON.parse(readFileSync(join(home, 'layout-interrupt', 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(index.manifests.map((m) => m.digest)).toEqual([w.digests[0]]);
  });

  it('SIGTERM between builds ends it with 143', async () => {
    const w = watch(context({ Dockerfile: `FROM ${baseRef}\n` }));
    await w.built(1);
    w.child.kill('SIGTERM');
    expect(await w.exited).toEqual({ code: 143, signal: null });
  });

  it('outputs, records and a cache inside the context do not trigger builds', async () => {
    const ctx = context({ Dockerfile: `FROM ${baseRef}\nCOPY app.txt /\n`, 'app.txt': '1' });
    const w = watch(
      ctx,
      '-o',
      `type=local,dest=${join(ctx, 'out')}`,
      '-o',
      `oci:${join(ctx, 'layout')}:1`,
      '-o',
      `type=tar,dest=${join(ctx, 'fs.tar')}`,
      '--iidfile',
      join(ctx, 'iid'),
      '--cache-dir',
      join(ctx, '.cache'),
    );
    await w.built(1);
    expect(existsSync(join(ctx, 'out', 'app.txt'))).toBe(true);
    writeFileSync(join(ctx, 'app.txt'), '2');
    await w.built(2);
    writeFileSync(join(ctx, 'app.txt'), '3');
    await w.built(3);
    // Each build was started by the edit alone, never by what the build before it wrote.
    expect(w.triggers).toEqual(['app.txt changed', 'app.txt changed']);
    expect(readFileSync(join(ctx, 'out', 'app.txt'), 'utf8')).toBe('3');
  });

  it('refuses what cannot be watched or written again and again (exit 2)', () => {
    const ctx = context({ Dockerfile: `FROM ${baseRef}\n` });
    const usage = (...args: string[]): string => {
      const result = spawnSync(process.execPath, [BIN, 'build', '--watch', ...args], {
        env: env(),
        encoding: 'utf8',
        input: 'FROM scratch\n',
      });
      expect(result.status, result.stderr).toBe(2);
      return result.stderr;
    };
    expect(usage('-')).toMatch(/--watch .*not standard input/);
    expect(usage(ctx, '-f', '-')).toMatch(/--watch .*not standard input/);
    expect(usage(ctx, '-o', '-')).toMatch(/--watch .*standard output/);
    expect(usage(ctx, '-o', 'type=tar,dest=-')).toMatch(/--watch .*standard output/);
    expect(usage(ctx, '--check')).toMatch(/--watch builds/);
    expect(usage(ctx, '-o', `type=local,dest=${ctx}`)).toMatch(/context directory .* itself/);
  });
});
