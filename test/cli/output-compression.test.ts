import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zstdSupported } from '../../src/oci/zstd-codec.js';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');
const UNSUPPORTED_MESSAGE = /this Node\.js \(v\d+\.\d+\.\d+\) lacks; Node\.js 22\.15 or later has it/;

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Layout {
  readonly manifests: { digest: string }[];
}
interface Manifest {
  readonly layers: { mediaType: string }[];
}

/**
 * BuildKit's `-o type=...,compression=gzip|zstd|uncompressed[,compression-level=N]` through the
 * CLI in dist/: the layers this build makes carry the asked media type; conflicts are usage errors.
 */
describe.skipIf(!isRoot)('stratum build -o ...,compression=', () => {
  let dir: string;
  let ctx: string;

  const run = (args: readonly string[]): Run => {
    const result = spawnSync(process.execPath, [BIN, ...args], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data'), STRATUM_CACHE_DIR: join(dir, 'cache') },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };
  /** The media types of the built layers (the base's first layer left out). */
  const builtLayerTypes = (layout: string): string[] => {
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as Layout;
    const manifest = JSON.parse(
      readFileSync(join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8'),
    ) as Manifest;
    return manifest.layers.slice(1).map((layer) => layer.mediaType);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-out-compression-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    const baseRef = `oci:${writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1').layout}:1`;
    ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), `FROM ${baseRef}\nRUN echo built > /built\n`);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('compression=uncompressed and compression=gzip,compression-level=9 set the layer media type', () => {
    const plain = run([
      'build',
      ctx,
      '--network',
      'none',
      '-o',
      `type=oci,dest=${dir}/plain,tar=false,compression=uncompressed`,
    ]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(builtLayerTypes(join(dir, 'plain'))).toEqual(['application/vnd.oci.image.layer.v1.tar']);
    const gzip = run([
      'build',
      ctx,
      '--network',
      'none',
      '-o',
      `type=oci,dest=${dir}/gzip,tar=false,compression=gzip,compression-level=9`,
    ]);
    expect(gzip.status, gzip.stderr).toBe(0);
    expect(builtLayerTypes(join(dir, 'gzip'))).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip']);
  });

  it('compression=zstd writes +zstd layers (UNSUPPORTED naming the Node.js version where zlib lacks zstd)', () => {
    const result = run([
      'build',
      ctx,
      '--network',
      'none',
      '-o',
      `type=oci,dest=${dir}/zstd,tar=false,compression=zstd`,
    ]);
    if (!zstdSupported()) {
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(UNSUPPORTED_MESSAGE);
      return;
    }
    expect(result.status, result.stderr).toBe(0);
    expect(builtLayerTypes(join(dir, 'zstd'))).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd']);
  });

  it('conflicting compressions, a bad value and force-compression=true are refused by name', () => {
    const conflict = run([
      'build',
      ctx,
      '-o',
      `type=oci,dest=${dir}/a,compression=gzip`,
      '-o',
      `type=docker,dest=${dir}/b.tar,compression=uncompressed`,
    ]);
    expect(conflict.status).toBe(2);
    expect(conflict.stderr).toMatch(/ask for different layer compressions \(gzip, uncompressed\)/);

    const flag = run([
      'build',
      ctx,
      '--compression',
      'gzip',
      '-o',
      `type=oci,dest=${dir}/c,compression=uncompressed`,
    ]);
    expect(flag.status).toBe(2);
    expect(flag.stderr).toMatch(/--compression gzip-6 and an --output's compression=uncompressed disagree/);

    const bad = run(['build', ctx, '-o', `type=oci,dest=${dir}/d,compression=brotli`]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown compression "brotli"/);

    const level = run(['build', ctx, '-o', `type=oci,dest=${dir}/e,compression=gzip,compression-level=42`]);
    expect(level.status).toBe(2);
    expect(level.stderr).toMatch(/gzip level 42 is out of range 1\.\.9/);

    const force = run(['build', ctx, '-o', `type=oci,dest=${dir}/f,compression=gzip,force-compression=true`]);
    expect(force.status).toBe(1);
    expect(force.stderr).toMatch(/force-compression=true \(recompressing base layers\) is not supported/);
    for (const result of [conflict, flag, bad, level, force]) expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
