import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { layerBlobPaths } from '../helpers/layout.js';
import { isRoot } from '../helpers/system.js';
import { LayerCache } from '../../src/cache/store.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import { cacheUsage } from '../../src/cache/prune.js';
import { pruneCacheDir } from '../../src/cache/admin.js';
import { mountsBelow } from '../../src/snapshot/unpacked-layers.js';
import { runOverlayHelper } from '../../src/snapshot/overlay-helper.js';

/**
 * The overlay snapshotter end to end: layers unpacked once per DiffID in overlay's form, steps
 * on overlay mounts, Docker's copy-up semantics, crash safety and the mount option limit.
 */

function snapshotterOf(events: readonly BuildEvent[]): string | undefined {
  const event = events.find((candidate) => candidate.kind === 'snapshotter');
  return event?.kind === 'snapshotter' ? event.name : undefined;
}

function materialized(events: readonly BuildEvent[]): number {
  return events.reduce((sum, event) => sum + (event.kind === 'materialize' ? event.layers : 0), 0);
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Layer tars listed (uncompressed) by `tar tf`. */
function layerNames(layout: string): string[][] {
  return layerBlobPaths(layout).map((blob) =>
    execFileSync('tar', ['tzf', blob], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line !== ''),
  );
}

function lastLayerBlob(layout: string): string {
  return layerBlobPaths(layout).at(-1)!;
}

/** An OCI layout whose layers are the busybox rootfs plus one small tar per directory in `dirs`. */
function writeLayeredImage(baseTar: Buffer, dirs: readonly string[], out: string): void {
  const tars = [
    baseTar,
    ...dirs.map((dir) =>
      execFileSync(
        'tar',
        ['-C', dir, '--sort=name', '--numeric-owner', '--mtime=@1700000000', '-cf', '-', '.'],
        { maxBuffer: 64 << 20 },
      ),
    ),
  ];
  mkdirSync(join(out, 'blobs/sha256'), { recursive: true });
  const layers = tars.map((tar) => {
    const gz = gzipSync(tar);
    writeFileSync(join(out, 'blobs/sha256', sha256(gz)), gz);
    return {
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: `sha256:${sha256(gz)}`,
      size: gz.length,
    };
  });
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: tars.map((tar) => `sha256:${sha256(tar)}`) },
    history: tars.map(() => ({ created_by: 'test layer' })),
  });
  writeFileSync(join(out, 'blobs/sha256', sha256(config)), config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${sha256(config)}`,
      size: config.length,
    },
    layers,
  });
  writeFileSync(join(out, 'blobs/sha256', sha256(manifest)), manifest);
  writeFileSync(join(out, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(out, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(manifest)}`,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': '1' },
        },
      ],
    }),
  );
}

describe.skipIf(!isRoot)('overlay snapshotter', () => {
  let box: BuildSandbox;
  beforeAll(() => {
    box = buildSandbox();
  });
  afterAll(() => {
    box.cleanup();
  });

  it('auto picks overlay as root and says so; scan is chosen on request', async () => {
    const ctx = box.context('choice', { Dockerfile: `FROM ${box.baseRef}\nRUN echo hi > /hi\n` });
    const overlay = await box.build(ctx, { noCache: true, snapshotter: 'auto' });
    expect(snapshotterOf(overlay.events)).toBe('overlay');
    const scan = await box.build(ctx, { noCache: true, snapshotter: 'scan' });
    expect(snapshotterOf(scan.events)).toBe('scan');
  });

  it('a file opened for writing and left unchanged is in the layer, as in Docker', async () => {
    // `: >>` opens /etc/passwd for appending and writes nothing: overlayfs copies it up.
    const ctx = box.context('lockfile', {
      Dockerfile: `FROM ${box.baseRef}\nRUN : >> /etc/passwd && echo x > /x\n`,
    });
    await box.build(ctx, {
      noCache: true,
      snapshotter: 'overlay',
      outputs: [`oci:${box.dir}/lock-overlay:1`],
    });
    expect(layerNames(join(box.dir, 'lock-overlay'))[1]).toEqual(['etc/', 'etc/passwd', 'x']);
    // The scan snapshotter cannot see an open: its layer has only what changed.
    await box.build(ctx, { noCache: true, snapshotter: 'scan', outputs: [`oci:${box.dir}/lock-scan:1`] });
    expect(layerNames(join(box.dir, 'lock-scan'))[1]).toEqual(['x']);
  });

  it("each layer is unpacked once, keyed by DiffID; a step's upperdir becomes its layer; a rebuild extracts nothing", async () => {
    const ctx = box.context('once', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo one > /one && rm /bin/ls\nCOPY src /src\nRUN cat /src /one > /both\n`,
      src: 'v1',
    });
    const cacheDir = join(box.dir, 'once-cache');
    const first = await box.build(ctx, {
      cacheDir,
      snapshotter: 'overlay',
      outputs: [`oci:${box.dir}/once:1`],
    });
    expect(materialized(first.events)).toBe(1); // only the base
    const layersDir = join(cacheDir, 'overlay', 'layers');
    const unpacked = readdirSync(layersDir);
    expect(unpacked).toContain(box.base.diffId.slice(7));
    // The RUN's layer was adopted from its upperdir: in overlay form, with the whiteout.
    const image = await box.open(`oci:${box.dir}/once:1`);
    const diffIds = image.config.value.rootfs.diff_ids;
    await image.close();
    for (const diffId of diffIds) expect(unpacked).toContain(diffId.slice(7));
    const whiteout = lstatSync(join(layersDir, diffIds[1]!.slice(7), 'bin/ls'));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);

    writeFileSync(join(ctx, 'src'), 'v2');
    const second = await box.build(ctx, { cacheDir, snapshotter: 'overlay' });
    expect(materialized(second.events)).toBe(0);
    expect(
      second.events.filter((event) => event.kind === 'step-end' && event.outcome === 'cached'),
    ).toHaveLength(1);
  });

  it('after a machine crash, layers placed unflushed are extracted again from their blobs, never mounted torn', async () => {
    const ctx = box.context('crash', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo made > /made\nCOPY src /src\nRUN cat /made /src > /both\n`,
      src: 'v1',
    });
    const cacheDir = join(box.dir, 'crash-cache');
    await box.build(ctx, { cacheDir, snapshotter: 'overlay', outputs: [`oci:${box.dir}/crash:1`] });
    const store = join(cacheDir, 'overlay');
    const journal = readdirSync(join(store, 'unflushed'));
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    expect(journal).toContain(bootId);
    const image = await box.open(`oci:${box.dir}/crash:1`);
    const [baseId, madeId] = image.config.value.rootfs.diff_ids.map((id) => id.slice(7));
    await image.close();
    // What a power loss can leave: the base's and the RUN's layers under their names, a file
    // zero bytes long; and this boot's journal now an earlier boot's.
    writeFileSync(join(store, 'layers', madeId!, 'made'), '');
    writeFileSync(join(store, 'layers', baseId!, 'etc/passwd'), '');
    const earlier = '00000000-0000-0000-0000-000000000001';
    renameSync(join(store, 'unflushed', bootId), join(store, 'unflushed', earlier));

    writeFileSync(join(ctx, 'src'), 'v2');
    const rebuilt = await box.build(ctx, {
      cacheDir,
      snapshotter: 'overlay',
      outputs: [`oci:${box.dir}/crash2:1`],
    });
    // Both were extracted again (the base and the cached RUN's layer), and the step read them whole.
    expect(materialized(rebuilt.events)).toBe(2);
    expect(readFileSync(join(store, 'layers', madeId!, 'made'), 'utf8')).toBe('made\n');
    expect(readFileSync(join(store, 'layers', baseId!, 'etc/passwd'), 'utf8')).not.toBe('');
    const names = layerNames(join(box.dir, 'crash2'));
    expect(names.at(-1)).toEqual(['both']);
    const both = execFileSync('tar', ['-xzOf', lastLayerBlob(join(box.dir, 'crash2')), 'both'], {
      encoding: 'utf8',
    });
    expect(both).toBe('made\nv2');
    expect(readdirSync(join(store, 'unflushed'))).not.toContain(earlier);
  });

  it('cache du counts unpacked layers; cache prune removes them, except those a live build leased', async () => {
    const cacheDir = join(box.dir, 'prune-cache');
    const ctx = box.context('prune', { Dockerfile: `FROM ${box.baseRef}\nRUN echo p > /p\n` });
    await box.build(ctx, { cacheDir, snapshotter: 'overlay' });
    const cache = new LayerCache(cacheDir);
    expect((await cacheUsage(cache)).unpackedBytes).toBeGreaterThan(lstatSync('/bin/busybox').size);
    // A live build (this process) holding the base layer.
    const base = box.base.diffId.slice(7);
    const session = join(cacheDir, 'overlay/sessions', `${process.pid}-test`);
    mkdirSync(session);
    writeFileSync(join(session, 'leases'), `${base}\n`);
    await pruneCacheDir(cache);
    expect(readdirSync(join(cacheDir, 'overlay/layers'))).toEqual([base]);
    execFileSync('rm', ['-rf', session]);
    await pruneCacheDir(cache);
    expect(readdirSync(join(cacheDir, 'overlay/layers'))).toEqual([]);
    expect((await cacheUsage(cache)).unpackedBytes).toBe(0);
  });

  it('opaque directories and whiteouts of a pulled layer are stored as overlay has them', async () => {
    const dirs = [join(box.dir, 'wh-1'), join(box.dir, 'wh-2')];
    mkdirSync(join(dirs[0]!, 'd/sub'), { recursive: true });
    writeFileSync(join(dirs[0]!, 'd/sub/old'), 'old');
    writeFileSync(join(dirs[0]!, 'gone'), 'gone');
    mkdirSync(join(dirs[1]!, 'd'), { recursive: true });
    writeFileSync(join(dirs[1]!, 'd/.wh..wh..opq'), '');
    writeFileSync(join(dirs[1]!, 'd/new'), 'new');
    writeFileSync(join(dirs[1]!, '.wh.gone'), '');
    const baseTar = execFileSync(
      'tar',
      ['-C', join(box.dir, 'base-rootfs'), '--sort=name', '--numeric-owner', '-cf', '-', '.'],
      {
        maxBuffer: 64 << 20,
      },
    );
    writeLayeredImage(baseTar, dirs, join(box.dir, 'wh-image'));
    const ctx = box.context('wh', {
      Dockerfile: `FROM oci:${box.dir}/wh-image:1\nRUN test ! -e /gone && test ! -e /d/sub && cat /d/new > /seen\n`,
    });
    await box.build(ctx, { noCache: true, snapshotter: 'overlay' });
    const image = await box.open(`oci:${box.dir}/wh-image:1`);
    const top = join(box.cacheDir, 'overlay/layers', image.config.value.rootfs.diff_ids[2]!.slice(7));
    await image.close();
    expect(lstatSync(join(top, 'gone')).isCharacterDevice()).toBe(true);
    expect(
      await runOverlayHelper([{ op: 'getopq', path: join(top, 'd'), name: 'trusted.overlay.opaque' }]),
    ).toEqual(['y']);
  });

  it("a layer with an opaque root hides every layer below it (overlayfs ignores a lowerdir root's flag)", async () => {
    // Layer 1 adds /below; layer 2 is a whole userland again plus `.wh..wh..opq` at its root.
    const below = join(box.dir, 'root-opq-1');
    mkdirSync(below, { recursive: true });
    writeFileSync(join(below, 'below'), 'hidden by the next layer');
    const top = join(box.dir, 'root-opq-2');
    execFileSync('cp', ['-a', join(box.dir, 'base-rootfs'), top]);
    writeFileSync(join(top, '.wh..wh..opq'), '');
    writeFileSync(join(top, 'top'), 'seen');
    const baseTar = execFileSync(
      'tar',
      ['-C', join(box.dir, 'base-rootfs'), '--sort=name', '--numeric-owner', '-cf', '-', '.'],
      { maxBuffer: 64 << 20 },
    );
    writeLayeredImage(baseTar, [below, top], join(box.dir, 'root-opq-image'));
    const ctx = box.context('root-opq', {
      Dockerfile: `FROM oci:${box.dir}/root-opq-image:1\nRUN test ! -e /below && cat /top > /seen\n`,
    });
    for (const snapshotter of ['overlay', 'scan'] as const) {
      const result = await box.build(ctx, { noCache: true, snapshotter });
      expect(snapshotterOf(result.events)).toBe(snapshotter);
    }
  });

  it('a 200-layer base mounts (short relative lowerdir names) and the step sees every layer', async () => {
    const dirs: string[] = [];
    for (let index = 0; index < 199; index++) {
      const dir = join(box.dir, `many-${index}`);
      mkdirSync(join(dir, 'many'), { recursive: true });
      writeFileSync(join(dir, 'many', `f${index}`), String(index));
      dirs.push(dir);
    }
    const baseTar = execFileSync(
      'tar',
      ['-C', join(box.dir, 'base-rootfs'), '--sort=name', '--numeric-owner', '-cf', '-', '.'],
      {
        maxBuffer: 64 << 20,
      },
    );
    writeLayeredImage(baseTar, dirs, join(box.dir, 'many-image'));
    const ctx = box.context('many', {
      Dockerfile: `FROM oci:${box.dir}/many-image:1\nRUN ls /many | wc -l > /count && cat /many/f0 /many/f198 >> /count\n`,
    });
    await box.build(ctx, { noCache: true, snapshotter: 'overlay', outputs: [`oci:${box.dir}/many-out:1`] });
    const layers = layerNames(join(box.dir, 'many-out'));
    expect(layers).toHaveLength(201);
    expect(layers[200]).toEqual(['count']);
    const last = lastLayerBlob(join(box.dir, 'many-out'));
    const out = execFileSync('tar', ['xzOf', last, 'count'], { encoding: 'utf8' });
    expect(out).toBe('199\n0198');
  });

  it('two builds at once share the unpacked layers and both succeed', async () => {
    const one = box.context('share-1', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo 1 > /one\nRUN sleep 0.3\n`,
    });
    const two = box.context('share-2', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo 2 > /two\nRUN sleep 0.3\n`,
    });
    const [a, b] = await Promise.all([
      box.build(one, { noCache: true, snapshotter: 'overlay' }),
      box.build(two, { noCache: true, snapshotter: 'overlay' }),
    ]);
    expect(a.digest).not.toBe(b.digest);
    expect(await mountsBelow(box.cacheDir)).toEqual([]);
    expect(readdirSync(join(box.cacheDir, 'overlay', 'sessions'))).toEqual([]);
  });

  it('SIGKILL during extraction, a step or a commit: no half layer is used, nothing stays mounted, the next build succeeds', async () => {
    const ctx = box.context('killed', {
      Dockerfile: `FROM ${box.baseRef}\nRUN dd if=/dev/zero of=/big bs=1M count=20 2>/dev/null && rm /bin/ls\nRUN echo after > /after\nCOPY f /f\n`,
      f: 'content',
    });
    const cacheDir = join(box.dir, 'killed-cache');
    const bin = resolve(import.meta.dirname, '../../bin/stratum.js');
    const env = {
      ...process.env,
      STRATUM_DATA_DIR: box.dataDir,
      STRATUM_CACHE_DIR: cacheDir,
      STRATUM_SNAPSHOTTER: 'overlay',
    };
    for (const delayMs of [100, 250, 400, 600, 900, 1300]) {
      // A fresh layer store each time for the early kills, so extraction itself is interrupted.
      if (delayMs <= 250) execFileSync('rm', ['-rf', join(cacheDir, 'overlay')]);
      const child = spawn(
        process.execPath,
        [bin, 'build', ctx, '--network', 'none', '--progress', 'quiet', '--no-cache'],
        {
          env,
          stdio: 'ignore',
        },
      );
      const exited = new Promise((done) => child.once('exit', done));
      await new Promise((done) => setTimeout(done, delayMs));
      child.kill('SIGKILL');
      await exited;
    }
    const result = await box.build(ctx, {
      cacheDir,
      noCache: true,
      snapshotter: 'overlay',
      outputs: [`oci:${box.dir}/killed:1`],
    });
    expect(snapshotterOf(result.events)).toBe('overlay');
    // The killed builds' mounts, sessions and partial extractions are gone.
    expect(await mountsBelow(cacheDir)).toEqual([]);
    expect(readdirSync(join(cacheDir, 'overlay', 'sessions'))).toEqual([]);
    expect(readdirSync(join(cacheDir, 'overlay', 'tmp'))).toEqual([]);
    // Every unpacked base layer is whole: the busybox binary is there with all its bytes.
    const busybox = lstatSync(join(cacheDir, 'overlay/layers', box.base.diffId.slice(7), 'bin/busybox'));
    expect(busybox.size).toBe(lstatSync('/bin/busybox').size);
    expect(layerNames(join(box.dir, 'killed'))[1]).toEqual(['big', 'bin/', 'bin/.wh.ls']);
  });
});
