import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Issue 26: `copy` printed a digest other than the source's without saying why. It prints what
 * the destination holds, and when that is not the source's digest, says why on stderr.
 */
describe("stratum copy says why the digest it prints is not the source's", () => {
  let dir: string;
  let source: string;
  let sourceDigest: string;
  const copy = (to: string): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [BIN, 'copy', source, to], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data') },
      encoding: 'utf8',
    });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-copy-digest-'));
    const rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    const base = writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    source = `oci:${base.layout}:1`;
    sourceDigest = copy(`oci:${join(dir, 'same')}:1`).stdout.trim();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('an OCI layout keeps the manifest: the same digest, nothing to explain', () => {
    const result = copy(`oci-archive:${join(dir, 'o.tar')}:1`);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(sourceDigest);
    expect(result.stderr).toBe('');
  });

  it('a docker-archive holds another manifest: its digest on stdout, the reason on stderr', () => {
    const archive = join(dir, 'd.tar');
    const result = copy(`docker-archive:${archive}:x:1`);
    expect(result.status, result.stderr).toBe(0);
    const printed = result.stdout.trim();
    expect(printed).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(printed).not.toBe(sourceDigest);
    expect(result.stderr).toBe(
      `note: docker-archive:${archive}:x:1 holds ${printed}, not ${source}'s ${sourceDigest}: a docker-archive holds no manifest and stores its layers uncompressed; this is the manifest a reader of it derives\n`,
    );
  });
});
