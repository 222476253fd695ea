import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 26: a full disk gave `stratum: ENOSPC: no space left on device, write`, naming nothing.
 * Each destination on a 256 KiB tmpfs (root mounts it) now says which one was full.
 */
describe.skipIf(!isRoot)('a full destination disk is named', () => {
  let dir: string;
  let small: string;
  let source: string;
  let ctx: string;
  const run = (...args: string[]): { status: number | null; stderr: string } =>
    spawnSync(process.execPath, [BIN, ...args], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data'), STRATUM_CACHE_DIR: join(dir, 'cache') },
      encoding: 'utf8',
    });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-full-disk-'));
    const rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    source = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${source}\nCOPY Dockerfile /\n`);
    small = join(dir, 'small');
    mkdirSync(small);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small]);
    expect(mounted.status, String(mounted.stderr)).toBe(0);
  });
  afterAll(() => {
    spawnSync('umount', [small]);
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['copy to oci:', (at: string) => ['copy', source, `oci:${at}/o:1`], (at: string) => `oci:${at}/o:1`],
    [
      'copy to oci-archive:',
      (at: string) => ['copy', source, `oci-archive:${at}/o.tar`],
      (at: string) => `oci-archive:${at}/o.tar`,
    ],
    [
      'copy to docker-archive:',
      (at: string) => ['copy', source, `docker-archive:${at}/d.tar:x:1`],
      (at: string) => `docker-archive:${at}/d.tar:x:1`,
    ],
    [
      'build -o type=local',
      (at: string) => ['build', ctx, '-q', '-o', `type=local,dest=${at}/fs`],
      (at: string) => `type=local,dest=${at}/fs`,
    ],
    [
      'build -o type=tar',
      (at: string) => ['build', ctx, '-q', '-o', `type=tar,dest=${at}/fs.tar`],
      (at: string) => `type=tar,dest=${at}/fs.tar`,
    ],
  ])('%s', (_name, args, destination) => {
    const result = run(...args(small));
    spawnSync('sh', ['-c', `rm -rf ${small}/*`]);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr.trim().split('\n').at(-1)).toBe(
      `stratum: ${destination(small)}: no space left on device (ENOSPC)`,
    );
  });
});
