import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { openLayerTar } from '../../src/oci/layer.js';
import { zstdSupported } from '../../src/oci/zstd-codec.js';
import { extractLayerAuto } from '../../src/snapshot/extract.js';
import { copyImage } from '../../src/transport/images.js';
import { sniffCompression } from '../../src/oci/compression.js';
import { MediaType } from '../../src/oci/types.js';
import { makeBusyboxRootfs } from '../helpers/base-image.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * zstd layers end to end. Every test asserts on both Node lines: where node:zlib has zstd
 * (Node ≥ 22.15; CI's Node 24) the zstd result, where it has not (CI's Node 20) the one-line
 * UNSUPPORTED error.
 */

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');
const UNSUPPORTED_MESSAGE = /this Node\.js \(v\d+\.\d+\.\d+\) lacks; Node\.js 22\.15 or later has it/;

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function rejection(promise: Promise<unknown>): Promise<StratumError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StratumError);
  return error as StratumError;
}

/** A busybox base whose one layer the zstd CLI compressed, as a zstd-publishing registry has it. */
function writeZstdBase(dir: string): { ref: string; layerDigest: string; diffId: string } {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  makeBusyboxRootfs(rootfs);
  writeFileSync(join(rootfs, 'etc/from-zstd-base'), 'made by the zstd CLI\n');
  const tar = execFileSync(
    'tar',
    ['-C', rootfs, '--sort=name', '--numeric-owner', '--mtime=@1700000000', '-cf', '-', '.'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const zst = execFileSync('zstd', ['-q', '-3', '-c'], { input: tar, maxBuffer: 64 * 1024 * 1024 });
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(tar)}`] },
    history: [{ created_by: 'zstd busybox base' }],
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: `sha256:${sha256(config)}`, size: config.length },
    layers: [{ mediaType: MediaType.ociLayerZstd, digest: `sha256:${sha256(zst)}`, size: zst.length }],
  });
  const layout = join(dir, 'layout');
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  for (const blob of [zst, config, manifest]) writeFileSync(join(layout, 'blobs/sha256', sha256(blob)), blob);
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: MediaType.ociManifest,
          digest: `sha256:${sha256(manifest)}`,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': 'z' },
        },
      ],
    }),
  );
  return { ref: `oci:${layout}:z`, layerDigest: `sha256:${sha256(zst)}`, diffId: `sha256:${sha256(tar)}` };
}

/** The layer tars of a docker-archive, by the order of its manifest. */
function dockerArchiveLayers(archive: string, dir: string): Buffer[] {
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-C', dir, '-xf', archive]);
  const [entry] = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
  return entry!.Layers.map((layer) => readFileSync(join(dir, layer)));
}

/** The layer blobs of a one-image OCI layout, in manifest order. */
function layoutLayers(layout: string): Buffer[] {
  const blob = (digest: string): Buffer => readFileSync(join(layout, 'blobs/sha256', digest.slice(7)));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(blob(index.manifests[0]!.digest).toString('utf8')) as {
    layers: { digest: string }[];
  };
  return manifest.layers.map((layer) => blob(layer.digest));
}

const canRun = isRoot && requireTool('zstd', 'zstd');

describe.skipIf(!canRun)('zstd layers: reading, writing, caching', () => {
  let box: BuildSandbox;
  let zbase: ReturnType<typeof writeZstdBase>;
  beforeAll(() => {
    box = buildSandbox();
    zbase = writeZstdBase(join(box.dir, 'zbase'));
  });
  afterAll(() => {
    box.cleanup();
  });

  it('a zstd base layer made with the zstd CLI is built on (RUN sees its files)', async () => {
    const ctx = box.context('on-zstd', {
      Dockerfile: `FROM ${zbase.ref}\nRUN cp /etc/from-zstd-base /copied\n`,
    });
    const out = `oci:${box.dir}/on-zstd:1`;
    if (!zstdSupported()) {
      const error = await rejection(box.build(ctx, { outputs: [out] }));
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toContain(zbase.layerDigest);
      expect(error.message).toMatch(UNSUPPORTED_MESSAGE);
      return;
    }
    await box.build(ctx, { outputs: [out] });
    const image = await box.open(out);
    const [base, run] = image.manifest.value.layers;
    // The base layer is kept as it was published; the new one is written with the default gzip.
    expect(base).toMatchObject({ mediaType: MediaType.ociLayerZstd, digest: zbase.layerDigest });
    expect(run!.mediaType).toBe(MediaType.ociLayerGzip);
    const target = mkdtempSync(join(tmpdir(), 'stratum-zstd-x-'));
    try {
      await extractLayerAuto(await image.openBlob(run!), target);
      expect(readFileSync(join(target, 'copied'), 'utf8')).toBe('made by the zstd CLI\n');
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });

  it('--compression zstd writes zstd layers that skopeo reads back and that extract to what the steps made', async () => {
    const ctx = box.context('write-zstd', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo from-run > /run.txt\nCOPY f.txt /f.txt\n`,
      'f.txt': 'from-copy\n',
    });
    const out = `oci:${box.dir}/write-zstd:1`;
    if (!zstdSupported()) {
      const error = await rejection(box.build(ctx, { outputs: [out], compression: { algorithm: 'zstd' } }));
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toMatch(/^--compression zstd: zstd compression needs/);
      expect(error.message).toMatch(UNSUPPORTED_MESSAGE);
      return;
    }
    await box.build(ctx, { outputs: [out], compression: { algorithm: 'zstd', level: 5 } });
    const image = await box.open(out);
    const layers = image.manifest.value.layers;
    expect(layers.map((layer) => layer.mediaType)).toEqual([
      MediaType.ociLayerGzip, // the base, as it was
      MediaType.ociLayerZstd,
      MediaType.ociLayerZstd,
    ]);
    // skopeo recompresses every layer to gzip, so it must decode our zstd: the gunzipped tars
    // must hash to our diff_ids.
    if (requireTool('skopeo', 'skopeo')) {
      const plain = join(box.dir, 'write-zstd-by-skopeo');
      execFileSync('skopeo', ['copy', '-q', '--dest-compress-format', 'gzip', out, `oci:${plain}:1`]);
      const blobs = layoutLayers(plain);
      expect(blobs.map((blob) => sniffCompression(blob))).toEqual(['gzip', 'gzip', 'gzip']);
      const tars = blobs.map((blob) => gunzipSync(blob));
      expect(tars.map((tar) => `sha256:${sha256(tar)}`)).toEqual(image.config.value.rootfs.diff_ids);
      const file = (tar: Buffer, name: string): string =>
        execFileSync('tar', ['-xOf', '-', name], { input: tar, encoding: 'utf8' });
      expect(file(tars[1]!, 'run.txt')).toBe('from-run\n');
      expect(file(tars[2]!, 'f.txt')).toBe('from-copy\n');
    }
    // And stratum's own reader, checking the diff_id on the way.
    const tar = await openLayerTar(image, layers[2]!, { diffId: image.config.value.rootfs.diff_ids[2]! });
    const chunks: Buffer[] = [];
    for await (const chunk of tar) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).includes(Buffer.from('from-copy\n'))).toBe(true);
  });

  it('the cache key includes the compression: a build with another compression misses, the same one hits', async () => {
    const ctx = box.context('cache-compression', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo ${randomBytes(4).toString('hex')} > /r\n`,
    });
    const hits = async (compression?: { algorithm: 'none' | 'gzip' | 'zstd' }): Promise<boolean[]> => {
      const result = await box.build(ctx, compression === undefined ? {} : { compression });
      return result.events.flatMap((event) => (event.kind === 'cache' ? [event.hit] : []));
    };
    expect(await hits()).toEqual([false]);
    expect(await hits()).toEqual([true]);
    // uncompressed exists on every Node line, so this part asserts the same on both.
    expect(await hits({ algorithm: 'none' })).toEqual([false]);
    expect(await hits({ algorithm: 'none' })).toEqual([true]);
    expect(await hits({ algorithm: 'gzip' })).toEqual([true]);
    if (!zstdSupported()) {
      const error = await rejection(hits({ algorithm: 'zstd' }));
      expect(error.code).toBe('UNSUPPORTED');
      return;
    }
    expect(await hits({ algorithm: 'zstd' })).toEqual([false]);
    expect(await hits({ algorithm: 'zstd' })).toEqual([true]);
  });

  it('docker-archive output decompresses zstd layers (Docker 20.10 cannot read them), and docker load takes it', async () => {
    const archive = join(box.dir, 'zbase.docker.tar');
    const tag = `stratum-i16-zstd-${randomBytes(4).toString('hex')}:1`;
    if (!zstdSupported()) {
      const error = await rejection(copyImage(zbase.ref, `docker-archive:${archive}:${tag}`));
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toMatch(UNSUPPORTED_MESSAGE);
      return;
    }
    await copyImage(zbase.ref, `docker-archive:${archive}:${tag}`);
    const [layer] = dockerArchiveLayers(archive, join(box.dir, 'zbase-unpacked'));
    expect(sniffCompression(layer!)).toBe('none');
    expect(`sha256:${sha256(layer!)}`).toBe(zbase.diffId);
    if (!requireTool('docker', 'docker.io')) return;
    try {
      execFileSync('/usr/bin/docker', ['load', '-q', '-i', archive]);
      const layers = execFileSync(
        '/usr/bin/docker',
        ['image', 'inspect', tag, '--format', '{{json .RootFS.Layers}}'],
        {
          encoding: 'utf8',
        },
      );
      expect(JSON.parse(layers)).toEqual([zbase.diffId]);
    } finally {
      spawnSync('/usr/bin/docker', ['rmi', '-f', tag], { stdio: 'ignore' });
    }
  });

  it('the command line: --compression zstd builds (or is one UNSUPPORTED line, exit 1); a bad value is a usage error (exit 2)', () => {
    const ctx = box.context('cli', { Dockerfile: `FROM ${box.baseRef}\nRUN echo cli > /cli\n` });
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, 'build', ctx, '--cache-dir', join(box.dir, 'cli-cache'), ...args], {
        encoding: 'utf8',
        env: { ...process.env, STRATUM_DATA_DIR: box.dataDir },
      });
    const bad = run('--compression', 'zstd,level=99');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toMatch(/--compression: zstd level 99 is out of range 1\.\.19$/);
    const out = join(box.dir, 'cli-out');
    const built = run('--compression', 'zstd,level=1', '--progress', 'quiet', '-o', `oci:${out}:1`);
    if (!zstdSupported()) {
      expect(built.status).toBe(1);
      expect(built.stderr.trim().split('\n')).toHaveLength(1);
      expect(built.stderr).toMatch(UNSUPPORTED_MESSAGE);
      return;
    }
    expect(built.stderr).toBe('');
    expect(built.status).toBe(0);
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    const manifest = JSON.parse(
      readFileSync(join(out, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8'),
    ) as { layers: { mediaType: string }[] };
    expect(manifest.layers.at(-1)!.mediaType).toBe(MediaType.ociLayerZstd);
  });
});
