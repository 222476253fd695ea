import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 27 (part 3): what a build reads from its context and writes to its outputs never
 * reaches the host beyond what the user named. A Dockerfile or .dockerignore that is a symlink
 * resolves inside the context; an output never replaces a FIFO, a device or a symlink; a killed
 * `type=local` export leaves nothing the next build or `cache prune` does not remove.
 */
let home: string;
const env = (): NodeJS.ProcessEnv => ({
  ...process.env,
  STRATUM_CACHE_DIR: join(home, 'cache'),
  STRATUM_DATA_DIR: join(home, 'data'),
});
const stratum = (
  args: readonly string[],
  input?: Buffer,
): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, [BIN, ...args], {
    env: env(),
    encoding: 'utf8',
    timeout: 120_000,
    ...(input === undefined ? {} : { input }),
  });
/** A context directory with these files (a value starting with `->` is a symlink to the rest). */
function context(name: string, files: Readonly<Record<string, string>>): string {
  const dir = join(home, name);
  mkdirSync(dir);
  for (const [file, content] of Object.entries(files)) {
    if (content.startsWith('->')) symlinkSync(content.slice(2), join(dir, file));
    else writeFileSync(join(dir, file), content);
  }
  return dir;
}
const tarOf = (dir: string): Buffer => {
  const tar = spawnSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  expect(tar.status, String(tar.stderr)).toBe(0);
  return tar.stdout;
};
const oneLine = (stderr: string): string => {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  return lines[0]!;
};

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'stratum-i27-io-'));
  // A host file whose first line would show in a Dockerfile parse error if it were read.
  writeFileSync(join(home, 'host-secret'), 'HOST-SECRET-LINE-5b1e\n');
  // A host file that, read as a .dockerignore, would exclude `a`.
  writeFileSync(join(home, 'host-ignore'), 'a\n');
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

describe('a Dockerfile symlink cannot read a host file', () => {
  const hostFile = (): string => join(home, 'host-secret');

  it('in a context directory: an absolute link resolves inside the context and is not found there', () => {
    const ctx = context('dir-abs', { Dockerfile: `->${hostFile()}` });
    const result = stratum(['build', ctx, '--progress', 'plain']);
    expect(result.status).toBe(1);
    const line = oneLine(result.stderr);
    expect(line).toMatch(
      /Dockerfile: no such Dockerfile \(leads to .*host-secret inside the build context\)/,
    );
    expect(result.stderr).not.toContain('HOST-SECRET');
  });

  it('in a context directory: a link that climbs with .. stops at the context root', () => {
    // ../host-secret is the host file, seen from the context directory.
    const ctx = context('dir-climb', { Dockerfile: '->../host-secret' });
    const result = stratum(['build', ctx]);
    expect(result.status).toBe(1);
    expect(oneLine(result.stderr)).toMatch(/no such Dockerfile/);
    expect(result.stderr).not.toContain('HOST-SECRET');
  });

  it('in a context directory: -f naming a link inside the context resolves it inside the context', () => {
    const ctx = context('dir-f', { 'app.Dockerfile': `->${hostFile()}` });
    const result = stratum(['build', ctx, '-f', join(ctx, 'app.Dockerfile')]);
    expect(result.status).toBe(1);
    expect(result.stderr).not.toContain('HOST-SECRET');
  });

  it('in a stdin tar: absolute and climbing links resolve inside the tar', () => {
    for (const [name, link] of [
      ['tar-abs', `->${hostFile()}`],
      // The tar is unpacked at <cache>/tmp/build-inputs-*/context: four levels up is the host file.
      ['tar-climb', '->../../../../host-secret'],
    ] as const) {
      const result = stratum(['build', '-'], tarOf(context(name, { Dockerfile: link })));
      expect(result.status, name).toBe(1);
      expect(oneLine(result.stderr)).toMatch(/^stratum: Dockerfile: no such Dockerfile in the context tar/);
      expect(result.stderr).not.toContain('HOST-SECRET');
    }
  });

  it('a link to a Dockerfile inside the context is followed there (absolute means the context root)', () => {
    const files = { 'real.df': 'FROM scratch\nLABEL from=inside\n', Dockerfile: '->/real.df' };
    const dir = stratum(['build', context('inside-dir', files), '--progress', 'quiet']);
    expect(dir.status, dir.stderr).toBe(0);
    const tar = stratum(['build', '-', '--progress', 'quiet'], tarOf(context('inside-tar', files)));
    expect(tar.status, tar.stderr).toBe(0);
  });

  it('a .dockerignore that links to a host file is not read from the host', () => {
    // Read on the host, it would exclude `a` and the COPY would fail.
    const files = {
      Dockerfile: 'FROM scratch\nCOPY a /a\n',
      a: 'a\n',
      '.dockerignore': `->${join(home, 'host-ignore')}`,
    };
    const dir = stratum(['build', context('ignore-dir', files), '--progress', 'quiet']);
    expect(dir.status, dir.stderr).toBe(0);
    const tar = stratum(['build', '-', '--progress', 'quiet'], tarOf(context('ignore-tar', files)));
    expect(tar.status, tar.stderr).toBe(0);
  });
});

describe('an output never replaces /dev/null-like files', () => {
  let ctx: string;
  let copiesStayedDevices = false;
  beforeAll(() => {
    ctx = context('out-ctx', { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'a\n' });
  });
  const build = (...args: string[]): ReturnType<typeof stratum> =>
    stratum(['build', ctx, '--progress', 'plain', ...args]);

  it.skipIf(!isRoot)(
    'a character device stays one: a copy of /dev/null takes the tar, one of /dev/full refuses it',
    () => {
      const devNull = join(home, 'null');
      const devFull = join(home, 'full');
      for (const [path, minor] of [
        [devNull, '3'],
        [devFull, '7'],
      ] as const) {
        const made = spawnSync('mknod', ['-m', '666', path, 'c', '1', minor]);
        expect(made.status, String(made.stderr)).toBe(0);
      }
      const toNull = build(
        '-o',
        `type=tar,dest=${devNull}`,
        '--iidfile',
        devNull,
        '--metadata-file',
        devNull,
      );
      expect(toNull.status, toNull.stderr).toBe(0);
      expect(lstatSync(devNull).isCharacterDevice()).toBe(true);
      for (const output of [`type=tar,dest=${devFull}`, `oci-archive:${devFull}`]) {
        const toFull = build('-o', output);
        expect(toFull.status, toFull.stderr).toBe(1);
        expect(toFull.stderr.trim().split('\n').at(-1)).toMatch(/full: no space left on device \(ENOSPC\)$/);
        expect(lstatSync(devFull).isCharacterDevice(), output).toBe(true);
      }
      copiesStayedDevices = true;
    },
  );

  it('/dev/full and /dev/null themselves stay character devices', () => {
    // As root a regression would replace the machine's own devices: only after the copies held.
    if (isRoot && !copiesStayedDevices)
      throw new Error('not run: the copies of /dev/null and /dev/full did not stay devices');
    const result = build('-o', 'type=tar,dest=/dev/full', '--iidfile', '/dev/null');
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/type=tar,dest=\/dev\/full: no space left on device \(ENOSPC\)/);
    expect(lstatSync('/dev/full').isCharacterDevice()).toBe(true);
    expect(lstatSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  /**
   * Builds with `args` while `cat` reads `fifo`; returns what it read. A reader still waiting 5 s
   * after the build ended (the FIFO was replaced, so nothing ever opens it) is killed.
   */
  async function buildIntoFifo(
    fifo: string,
    args: readonly string[],
  ): Promise<{ status: number | null; read: Buffer; stdout: string; stderr: string }> {
    expect(requireTool('mkfifo', 'coreutils')).toBe(true);
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    reader.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    const readerDone = new Promise<void>((resolveDone) => {
      reader.once('exit', () => {
        resolveDone();
      });
    });
    const child = spawn(process.execPath, [BIN, 'build', ctx, '--progress', 'quiet', ...args], {
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += String(chunk)));
    child.stderr.on('data', (chunk: Buffer) => (stderr += String(chunk)));
    const status = await new Promise<number | null>((resolveExit) => child.once('exit', resolveExit));
    const timer = setTimeout(() => reader.kill(), 5000);
    await readerDone;
    clearTimeout(timer);
    return { status, read: Buffer.concat(chunks), stdout, stderr };
  }

  it('a FIFO given as -o type=tar,dest= stays a FIFO, and its reader gets the whole tar', async () => {
    const fifo = join(home, 'tar-fifo');
    const result = await buildIntoFifo(fifo, ['-o', `type=tar,dest=${fifo}`]);
    expect(result.status, result.stderr).toBe(0);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    const listing = spawnSync('tar', ['-t'], { input: result.read, encoding: 'utf8' });
    expect(listing.stdout.split('\n')).toContain('a');
  });

  it('a FIFO given as --iidfile stays a FIFO', async () => {
    const fifo = join(home, 'iid-fifo');
    const result = await buildIntoFifo(fifo, ['--iidfile', fifo]);
    expect(result.status, result.stderr).toBe(0);
    expect(String(result.read)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(result.stdout.trim()).toBe(String(result.read));
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('--iidfile /proc/self/fd/1 (where /dev/stdout leads) writes the id to standard output', () => {
    // Not /dev/stdout itself: a regression would rename a file over the machine's /dev/stdout
    // (as the code before this test did); under /proc/self/fd it can only fail.
    const result = build('--iidfile', '/proc/self/fd/1');
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^(sha256:[0-9a-f]{64})\1\n$/);
  });

  it('a symlink as a destination is refused before the build and left as it was', () => {
    const target = join(home, 'link-target');
    writeFileSync(target, 'kept\n');
    const link = join(home, 'out-link');
    symlinkSync(target, link);
    for (const args of [
      ['--iidfile', link],
      ['--metadata-file', link],
      ['-o', `type=tar,dest=${link}`],
      ['-o', `oci-archive:${link}`],
      ['-o', `docker-archive:${link}`],
      ['-o', `type=local,dest=${link}`],
    ]) {
      const result = build(...args);
      expect(result.status, args.join(' ')).toBe(1);
      // One line and no step ran: refused before the build.
      expect(oneLine(result.stderr)).toMatch(
        /out-link is a symlink .*name the (file|directory) it points to/,
      );
      expect(readlinkSync(link)).toBe(target);
      expect(readFileSync(target, 'utf8')).toBe('kept\n');
    }
  });

  it('a path under /proc is refused before the build, naming the path given', () => {
    for (const [args, label] of [
      [['-o', 'type=local,dest=/proc/stratum-i27'], 'type=local,dest=/proc/stratum-i27'],
      [['--iidfile', '/proc/stratum-i27'], '--iidfile /proc/stratum-i27'],
      [['--metadata-file', '/proc/stratum-i27'], '--metadata-file /proc/stratum-i27'],
      [['-o', 'type=tar,dest=/proc/stratum-i27'], 'type=tar,dest=/proc/stratum-i27'],
    ] as const) {
      const result = build(...args);
      expect(result.status).toBe(1);
      expect(oneLine(result.stderr)).toBe(
        `stratum: ${label}: cannot write under /proc (a kernel filesystem)`,
      );
    }
  });
});

describe('a cache directory that cannot be made', () => {
  it('--cache-dir under /proc is one line naming the path, exit 1, not a spin', () => {
    // Node's mkdir(..., { recursive: true }) retries ENOENT under /proc forever.
    for (const command of [
      ['build', '.'],
      ['cache', 'prune'],
    ]) {
      const result = spawnSync(
        process.execPath,
        [BIN, ...command, '--cache-dir', '/proc/stratum-i27/cache'],
        {
          cwd: context(`proc-cache-${command[0]}`, { Dockerfile: 'FROM scratch\n' }),
          env: env(),
          encoding: 'utf8',
          timeout: 60_000,
        },
      );
      expect(result.status, result.stderr).toBe(1);
      expect(oneLine(result.stderr)).toMatch(
        /^stratum: \/proc\/stratum-i27\/cache\/\S+: cannot create \/proc\/stratum-i27 \(ENOENT\)$/,
      );
    }
  });
});

describe('a killed type=local export leaves nothing behind', () => {
  let ctx: string;
  beforeAll(() => {
    // Big enough that the export takes long enough to be killed in the middle of it.
    ctx = context('kill-ctx', { Dockerfile: 'FROM scratch\nCOPY big /big\nCOPY big /big2\n' });
    writeFileSync(join(ctx, 'big'), Buffer.alloc(96 * 1024 * 1024, 7));
  });
  const outputParent = (): string => join(home, 'kill-out');
  const leftovers = (): string[] =>
    existsSync(outputParent())
      ? readdirSync(outputParent()).filter((name) => name.startsWith('.stratum-'))
      : [];

  /** Starts an export and SIGKILLs it as soon as its staging directory appears beside the destination. */
  async function killMidExport(): Promise<void> {
    const child = spawn(
      process.execPath,
      [BIN, 'build', ctx, '--progress', 'quiet', '-o', `type=local,dest=${join(outputParent(), 'dest')}`],
      { env: env(), stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', resolveExit));
    const poll = setInterval(() => {
      if (leftovers().length > 0) child.kill('SIGKILL');
    }, 2);
    const status = await exited;
    clearInterval(poll);
    expect(status, 'the build was killed before it finished').toBeNull();
  }

  it('the staging directory beside the destination is removed by cache prune and by the next build', async () => {
    await killMidExport();
    expect(leftovers()).toHaveLength(1);
    const pruned = stratum(['cache', 'prune']);
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(leftovers()).toEqual([]);

    await killMidExport();
    expect(leftovers()).toHaveLength(1);
    const built = stratum([
      'build',
      context('kill-next', { Dockerfile: 'FROM scratch\n' }),
      '--progress',
      'quiet',
    ]);
    expect(built.status, built.stderr).toBe(0);
    expect(leftovers()).toEqual([]);
    expect(
      readdirSync(join(home, 'cache', 'tmp')).filter((name) => name.startsWith('stratum-export-')),
    ).toEqual([]);
  }, 120_000);
});
