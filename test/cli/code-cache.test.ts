import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * bin/load-cli.js: the bundle `npm run build` makes runs with V8's code cache of an earlier run,
 * kept per user, and only a cache file that is ours, private and intact is ever used.
 */
const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'stratum.js');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'stratum-code-cache-'));
const cacheHome = join(dir, 'xdg');
const cacheDir = join(cacheHome, 'stratum-code-cache');

beforeAll(() => {
  writeFileSync(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY a /a\n');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** `stratum parse` with the cache under `cacheHome`; its output must not depend on the cache. */
async function parse(): Promise<void> {
  const { stdout } = await run(process.execPath, [bin, 'parse'], {
    cwd: dir,
    env: { ...process.env, XDG_CACHE_HOME: cacheHome },
  });
  expect(stdout).toBe('stage 0: 1 instruction after FROM\n   1  FROM scratch\n   2  COPY a /a\n');
}

function cacheFiles(): string[] {
  return existsSync(cacheDir) ? readdirSync(cacheDir).map((name) => join(cacheDir, name)) : [];
}

/** The checksum in front of the data matches it. */
function intact(file: string): boolean {
  const content = readFileSync(file);
  return createHash('sha256').update(content.subarray(32)).digest().equals(content.subarray(0, 32));
}

describe('the code cache of the bundled CLI', () => {
  it('npm run build made the bundle the CLI runs', () => {
    expect(existsSync(join(root, 'dist', 'bundle', 'stratum.cjs'))).toBe(true);
  });

  it('a first run writes one private, intact file per command; the next run uses it as it is', async () => {
    await parse();
    const [file, ...others] = cacheFiles();
    expect(others).toEqual([]);
    expect(file).toMatch(/-parse\.bin$/);
    expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
    expect(statSync(file!).mode & 0o777).toBe(0o600);
    expect(intact(file!)).toBe(true);
    const before = statSync(file!);
    await parse();
    // V8 took it: a refused or missing cache is written again (a new file, renamed over).
    const after = statSync(file!);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  it('a damaged file is not used, and is replaced by a good one', async () => {
    const [file] = cacheFiles();
    const content = readFileSync(file!);
    content[content.length - 100]! ^= 0xff;
    writeFileSync(file!, content);
    expect(intact(file!)).toBe(false);
    await parse();
    expect(intact(file!)).toBe(true);
  });

  it('a file others may write is not used, and is replaced by a private one', async () => {
    const [file] = cacheFiles();
    chmodSync(file!, 0o666);
    const before = statSync(file!).ino;
    await parse();
    expect(statSync(file!).ino).not.toBe(before);
    expect(statSync(file!).mode & 0o777).toBe(0o600);
  });

  it('writing a new file keeps only the 16 most recent ones (old bundles do not pile up)', async () => {
    for (const file of cacheFiles()) rmSync(file);
    const old = Date.now() / 1000 - 86_400;
    for (let index = 0; index < 20; index++) {
      const file = join(cacheDir, `${String(index).padStart(32, '0')}-build.bin`);
      writeFileSync(file, 'old', { mode: 0o600 });
      utimesSync(file, old + index, old + index);
    }
    await parse();
    const left = cacheFiles().map((file) => basename(file));
    expect(left).toHaveLength(16);
    expect(left.filter((name) => name.endsWith('-parse.bin'))).toHaveLength(1);
    // The oldest five went; the newest fifteen of the old ones stayed.
    for (let index = 0; index < 5; index++)
      expect(left).not.toContain(`${String(index).padStart(32, '0')}-build.bin`);
    expect(left).toContain(`${String(19).padStart(32, '0')}-build.bin`);
  });

  it('in a directory others may write, nothing is read or written', async () => {
    for (const file of cacheFiles()) rmSync(file);
    chmodSync(cacheDir, 0o777);
    await parse();
    expect(cacheFiles()).toEqual([]);
  });

  it('XDG_CACHE_HOME where no directory can be made (/proc/x) runs without a cache, and ends', async () => {
    // Node's recursive mkdir retries ENOENT under /proc forever; the loader must not use it.
    const { stdout } = await run(process.execPath, [bin, '--version'], {
      env: { ...process.env, XDG_CACHE_HOME: '/proc/stratum-no-such-dir/cache' },
      timeout: 20_000,
    });
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
