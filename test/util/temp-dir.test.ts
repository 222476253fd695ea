import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openOciArchive } from '../../src/transport/index.js';
import { SWEEP_INTERVAL_MS, sweepDue } from '../../src/util/temp-dir.js';
import { makeTestLayout } from '../registry/harness.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** A PID that ran and is gone: the owner of a directory a killed process left. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  return Number(child.stdout);
}

const stratumEntries = (dir: string, prefix: string): string[] =>
  readdirSync(dir).filter((name) => name.startsWith(prefix));

/**
 * Issue 12: a compressed archive is inflated, and a docker-daemon: image staged, under
 * $STRATUM_TMPDIR or the cache's tmp/ (never the system /tmp), in a directory named after its
 * owner's PID, so that `cache prune` removes what a killed process left and keeps what a live one uses.
 */
describe('temporary directories of archives and the daemon live under the cache and are pruned', () => {
  let home: string;
  let archive: string;

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'stratum-w2-tempdir-'));
    const layout = join(home, 'layout');
    await makeTestLayout(layout, [{ 'hello.txt': 'hello\n' }], { tag: 'v1' });
    const tar = spawnSync('tar', ['-C', layout, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    expect(tar.status, String(tar.stderr)).toBe(0);
    archive = join(home, 'image.tar.gz');
    writeFileSync(archive, gzipSync(tar.stdout));
  });
  afterAll(() => {
    rmSync(home, { recursive: true, force: true });
  });

  it('a compressed archive is inflated into an owned directory under tmpDir, removed on close', async () => {
    const tmp = join(home, 'given-tmp');
    const systemBefore = stratumEntries(tmpdir(), 'stratum-archive-');
    const image = await openOciArchive(archive, 'v1', { tmpDir: tmp });
    try {
      expect(stratumEntries(tmp, 'stratum-archive-')).toEqual([
        expect.stringMatching(new RegExp(`^stratum-archive-${process.pid}-`)),
      ]);
      expect(stratumEntries(tmpdir(), 'stratum-archive-')).toEqual(systemBefore);
    } finally {
      await image.close();
    }
    expect(stratumEntries(tmp, 'stratum-archive-')).toEqual([]);
  });

  it('by default the archive goes under $STRATUM_TMPDIR, else the cache directory tmp/', async () => {
    const saved = { tmp: process.env['STRATUM_TMPDIR'], cache: process.env['STRATUM_CACHE_DIR'] };
    try {
      process.env['STRATUM_TMPDIR'] = join(home, 'env-tmp');
      let image = await openOciArchive(archive, 'v1');
      expect(stratumEntries(join(home, 'env-tmp'), 'stratum-archive-')).toHaveLength(1);
      await image.close();

      delete process.env['STRATUM_TMPDIR'];
      process.env['STRATUM_CACHE_DIR'] = join(home, 'env-cache');
      image = await openOciArchive(archive, 'v1');
      expect(stratumEntries(join(home, 'env-cache', 'tmp'), 'stratum-archive-')).toHaveLength(1);
      await image.close();
    } finally {
      if (saved.tmp === undefined) delete process.env['STRATUM_TMPDIR'];
      else process.env['STRATUM_TMPDIR'] = saved.tmp;
      if (saved.cache === undefined) delete process.env['STRATUM_CACHE_DIR'];
      else process.env['STRATUM_CACHE_DIR'] = saved.cache;
    }
  });

  it('cache prune removes the ones whose process is gone and keeps the ones in use', () => {
    const cache = join(home, 'prune-cache');
    const tmp = join(cache, 'tmp');
    const dead = deadPid();
    const abandoned = [`stratum-archive-${dead}-a1`, `stratum-daemon-${dead}-b2`, `stratum-load-${dead}-c3`];
    const inUse = `stratum-archive-${process.pid}-d4`;
    for (const name of [...abandoned, inUse]) {
      mkdirSync(join(tmp, name), { recursive: true });
      writeFileSync(join(tmp, name, 'archive.tar'), 'partial');
    }
    const pruned = spawnSync(process.execPath, [BIN, 'cache', 'prune'], {
      env: { ...process.env, STRATUM_CACHE_DIR: cache, STRATUM_DATA_DIR: join(home, 'data') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(readdirSync(tmp)).toEqual([inUse]);
  });
});

describe('sweepDue: how often a build looks for partial blobs', () => {
  it('is due the first time, not again within the interval, and again once it has passed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stratum-sweep-'));
    try {
      const stamp = join(dir, '.blobs-swept');
      expect(sweepDue(stamp)).toBe(true);
      expect(sweepDue(stamp)).toBe(false);
      // A stamp written within the current millisecond reads as not due (its mtime has
      // nanoseconds; Date.now() is truncated): a fine-grained kernel made it look like the future.
      const justNow = Date.now();
      utimesSync(stamp, (justNow + 0.9) / 1000, (justNow + 0.9) / 1000);
      expect(sweepDue(stamp, justNow)).toBe(false);
      expect(sweepDue(stamp, Date.now() + SWEEP_INTERVAL_MS + 1000)).toBe(true);
      // A stamp from the future (a clock set back) does not stop sweeps for good.
      const later = (Date.now() + 3 * SWEEP_INTERVAL_MS) / 1000;
      utimesSync(stamp, later, later);
      expect(sweepDue(stamp)).toBe(true);
      // Where no stamp can be written, every build sweeps, as before.
      expect(sweepDue(join(dir, 'missing', '.blobs-swept'))).toBe(true);
      expect(sweepDue(join(dir, 'missing', '.blobs-swept'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
