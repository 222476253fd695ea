import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCacheRef, parseLocalCacheRef } from '../../src/cache/remote/cache-ref.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import { cacheMountKey } from '../../src/executor/cache-mounts.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { startFaultProxy, startRegistry, type RunningRegistry } from '../registry/harness.js';

type CacheEvent = Extract<BuildEvent, { kind: 'cache' }>;

interface ExportedConfig {
  readonly entries: { key: string; record?: { step: string; dockerfile: string } }[];
  readonly mounts?: {
    id: string;
    uid: number;
    gid: number;
    mode: number;
    size: number;
    layer: { descriptor: { digest: string; size: number } };
  }[];
}

/** The config of the cache in a `type=local` directory. */
function localConfig(dir: string): ExportedConfig {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const blob = (digest: string): Buffer => readFileSync(join(dir, 'blobs/sha256', digest.slice(7)));
  const manifest = JSON.parse(blob(index.manifests[0]!.digest).toString()) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const config = JSON.parse(blob(manifest.config.digest).toString()) as ExportedConfig;
  // The registry keeps what a manifest lists: every mount blob is among its layers.
  for (const mount of config.mounts ?? [])
    expect(manifest.layers.map((layer) => layer.digest)).toContain(mount.layer.descriptor.digest);
  return config;
}

function misses(events: readonly BuildEvent[]): CacheEvent[] {
  return events.filter((event): event is CacheEvent => event.kind === 'cache' && !event.hit);
}

describe('cache attributes: mounts=true and mounts-max-size=', () => {
  it('are read by both cache kinds, with a 1 GiB default', () => {
    expect(parseLocalCacheRef('type=local,dest=/tmp/x,mounts=true', 'to')).toMatchObject({
      mounts: true,
      mountsMaxSize: 1024 ** 3,
    });
    expect(
      parseCacheRef('type=registry,ref=127.0.0.1:5000/a/cache,mounts=true,mounts-max-size=200MiB'),
    ).toMatchObject({ mounts: true, mountsMaxSize: 200 * 1024 * 1024 });
    expect(parseCacheRef('registry:127.0.0.1:5000/a/cache').mounts).toBe(false);
  });

  it.each([
    ['type=local,dest=/tmp/x,mounts=yes', /mounts must be true or false/],
    ['type=local,dest=/tmp/x,mounts-max-size=lots', /mounts-max-size=lots: expected a size/],
  ])('%s is a usage error', (text, reason) => {
    expect(() => parseLocalCacheRef(text, 'to')).toThrow(reason);
  });

  it('--cache-from takes no mounts= (what an import restores is what the export holds)', () => {
    expect(() => parseLocalCacheRef('type=local,src=/tmp/x,mounts=true', 'from')).toThrow(
      /"mounts" is not supported/,
    );
  });
});

const enabled = isRoot;

describe.skipIf(!enabled)('cache mounts exported with mounts=true, restored by --cache-from', () => {
  let box: BuildSandbox;
  /** Writes into the cache mount, as a package manager fills its cache. */
  let writer: string;
  /** Reads the cache mount into the image: what it saw is in /seen. */
  let reader: string;

  beforeAll(() => {
    box = buildSandbox();
    writer = box.context('writer', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'RUN --mount=type=cache,target=/var/cache/pkg,id=pkg,uid=1000,mode=0750 ' +
          'echo "downloaded once" > /var/cache/pkg/archive.deb && mkdir -p /var/cache/pkg/sub && echo nested > /var/cache/pkg/sub/n',
        '',
      ].join('\n'),
    });
    reader = box.context('reader', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'RUN --mount=type=cache,target=/c,id=pkg,uid=1000,mode=0750 ' +
          "{ cat /c/archive.deb /c/sub/n; stat -c '%u %a' /c; ls /c; } > /seen 2>&1 || true",
        '',
      ].join('\n'),
    });
  });
  afterAll(() => {
    box.cleanup();
  });

  const seen = (dir: string): string => readFileSync(join(dir, 'seen'), 'utf8');

  it.each(['overlay', 'scan'] as const)(
    'type=local (%s): a build on an empty cache directory sees what the earlier build left in its cache mount',
    async (snapshotter) => {
      const dest = join(box.dir, `local-${snapshotter}`);
      const first = await box.build(writer, {
        cacheDir: join(box.dir, `a-${snapshotter}`),
        snapshotter,
        cacheTo: [`type=local,dest=${dest},mounts=true`],
      });
      expect(misses(first.events)).toHaveLength(1);
      const config = localConfig(dest);
      expect(config.mounts).toHaveLength(1);
      expect(config.mounts![0]).toMatchObject({ id: 'pkg', uid: 1000, gid: 0, mode: 0o750 });
      expect(config.mounts![0]!.size).toBe('downloaded once\n'.length + 'nested\n'.length);

      const out = join(box.dir, `seen-${snapshotter}`);
      const second = await box.build(reader, {
        cacheDir: join(box.dir, `b-${snapshotter}`),
        snapshotter,
        cacheFrom: [`type=local,src=${dest}`],
        outputs: [`type=local,dest=${out}`],
      });
      expect(seen(out)).toBe('downloaded once\nnested\n1000 750\narchive.deb\nsub\n');
      expect(second.warnings.some((line) => /cache mount id=pkg .* restored from local:/.test(line))).toBe(
        true,
      );
    },
  );

  it('a mount that is not empty here is used as it is: the local copy wins', async () => {
    const dest = join(box.dir, 'local-overlay');
    const cacheDir = join(box.dir, 'has-own');
    const own = join(cacheDir, 'mounts', cacheMountKey({ id: 'pkg', uid: 1000, gid: 0, mode: 0o750 }));
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, 'archive.deb'), 'mine\n');
    const out = join(box.dir, 'seen-own');
    const built = await box.build(reader, {
      cacheDir,
      cacheFrom: [`type=local,src=${dest}`],
      outputs: [`type=local,dest=${out}`],
    });
    expect(seen(out)).toMatch(/^mine\n/);
    expect(built.warnings.filter((line) => /restored/.test(line))).toEqual([]);
  });

  it('a restore a killed build left half done is removed, and never seen', async () => {
    const dest = join(box.dir, 'local-overlay');
    const cacheDir = join(box.dir, 'after-crash');
    const mounts = join(cacheDir, 'mounts');
    // PID 2^22+1 is above Linux's pid_max: that holder is never alive.
    const leftover = join(mounts, '.restore-4194305-1-deadbeef');
    mkdirSync(join(leftover, 'sub'), { recursive: true });
    writeFileSync(join(leftover, 'archive.deb'), 'half\n');
    const out = join(box.dir, 'seen-after-crash');
    await box.build(reader, {
      cacheDir,
      cacheFrom: [`type=local,src=${dest}`],
      outputs: [`type=local,dest=${out}`],
    });
    expect(seen(out)).toMatch(/^downloaded once\n/);
    expect(existsSync(leftover)).toBe(false);
    expect(readdirSync(mounts).filter((name) => name.startsWith('.restore-'))).toEqual([]);
  });

  it('two builds restoring the same mount at once both see it whole', async () => {
    const dest = join(box.dir, 'local-overlay');
    const cacheDir = join(box.dir, 'concurrent');
    const outs = [join(box.dir, 'seen-c1'), join(box.dir, 'seen-c2')];
    const other = box.context('reader-2', {
      Dockerfile: readFileSync(join(reader, 'Dockerfile'), 'utf8').replace('> /seen', '> /seen ; true'),
    });
    await Promise.all(
      [reader, other].map((context, n) =>
        box.build(context, {
          cacheDir,
          cacheFrom: [`type=local,src=${dest}`],
          outputs: [`type=local,dest=${outs[n]!}`],
        }),
      ),
    );
    for (const out of outs) expect(seen(out)).toMatch(/^downloaded once\nnested\n/);
  });

  it('a fully cached build carries the imported mount over to its own export (as CI moves a fresh export into place)', async () => {
    const dest = join(box.dir, 'local-overlay');
    const next = join(box.dir, 'carried');
    const cacheDir = join(box.dir, 'carrier');
    const built = await box.build(writer, {
      cacheDir,
      cacheFrom: [`type=local,src=${dest}`],
      cacheTo: [`type=local,dest=${next},mounts=true`],
    });
    expect(misses(built.events)).toEqual([]);
    // Not restored: no step needed it.
    expect(built.warnings.filter((line) => /restored/.test(line))).toEqual([]);
    expect(localConfig(next).mounts!.map((mount) => mount.layer.descriptor.digest)).toEqual(
      localConfig(dest).mounts!.map((mount) => mount.layer.descriptor.digest),
    );
    const out = join(box.dir, 'seen-carried');
    await box.build(reader, {
      cacheDir: join(box.dir, 'after-carry'),
      cacheFrom: [`type=local,src=${next}`],
      outputs: [`type=local,dest=${out}`],
    });
    expect(seen(out)).toMatch(/^downloaded once\nnested\n/);
  });

  it('mounts-max-size leaves out a mount that does not fit, with a warning', async () => {
    const dest = join(box.dir, 'too-small');
    const built = await box.build(writer, {
      cacheDir: join(box.dir, 'a-overlay'),
      cacheTo: [`type=local,dest=${dest},mounts=true,mounts-max-size=10`],
    });
    expect(localConfig(dest).mounts ?? []).toEqual([]);
    expect(built.warnings.some((line) => /does not fit in mounts-max-size=10; not exported/.test(line))).toBe(
      true,
    );
  });

  it('without mounts=true nothing is packed: the export holds no mounts and no packing record is written', async () => {
    const cacheDir = join(box.dir, 'no-mounts');
    const dest = join(box.dir, 'no-mounts-dest');
    await box.build(writer, { cacheDir, cacheTo: [`type=local,dest=${dest}`] });
    expect(localConfig(dest).mounts).toBeUndefined();
    expect(readdirSync(join(cacheDir, 'mounts')).filter((name) => name.endsWith('.export.json'))).toEqual([]);
  });

  describe.skipIf(!requireTool('docker-registry', 'docker-registry'))('through a registry', () => {
    let registry: RunningRegistry;
    beforeAll(async () => {
      registry = await startRegistry();
    });
    afterAll(async () => {
      await registry.stop();
    });

    it('type=registry,mounts=true: restored on another machine; an unchanged mount is not uploaded again', async () => {
      const proxy = await startFaultProxy(registry.port);
      try {
        const ref = `${proxy.host}/app/cache:main`;
        const cacheDir = join(box.dir, 'reg-a');
        await box.build(writer, { cacheDir, cacheTo: [`type=registry,ref=${ref},mounts=true`] });
        const uploads = (): number =>
          proxy.log.filter((line) => line.method === 'POST' && line.url.includes('/blobs/uploads/')).length;
        const firstUploads = uploads();
        // Three blobs at least: the RUN layer, the mount, the config.
        expect(firstUploads).toBeGreaterThanOrEqual(3);

        // Every step hits, the mount is unchanged: only the new config goes up, no mount blob.
        await box.build(writer, { cacheDir, cacheTo: [`type=registry,ref=${ref},mounts=true`] });
        expect(uploads() - firstUploads).toBe(1);

        const out = join(box.dir, 'seen-registry');
        await box.build(reader, {
          cacheDir: join(box.dir, 'reg-b'),
          cacheFrom: [`registry:${ref}`],
          outputs: [`type=local,dest=${out}`],
        });
        expect(seen(out)).toBe('downloaded once\nnested\n1000 750\narchive.deb\nsub\n');
      } finally {
        await proxy.stop();
      }
    });

    it('a build whose RUN uses no cache mount downloads no mount blob', async () => {
      const proxy = await startFaultProxy(registry.port);
      try {
        const plain = box.context('no-mount', {
          Dockerfile: `FROM ${box.baseRef}\nRUN echo plain > /plain\n`,
        });
        const mountDigest = (await registryMountDigest(proxy.host)) ?? 'none';
        await box.build(plain, {
          cacheDir: join(box.dir, 'reg-c'),
          cacheFrom: [`registry:${proxy.host}/app/cache:main`],
        });
        expect(proxy.log.filter((line) => line.url.includes(mountDigest))).toEqual([]);
      } finally {
        await proxy.stop();
      }
    });
  });
});

/** The digest of the one mount blob under app/cache:main. */
async function registryMountDigest(host: string): Promise<string | undefined> {
  const get = async (path: string, accept: string): Promise<unknown> =>
    (await fetch(`http://${host}/v2/app/cache/${path}`, { headers: { accept } })).json();
  const manifest = (await get('manifests/main', 'application/vnd.oci.image.manifest.v1+json')) as {
    config: { digest: string };
  };
  const config = (await get(`blobs/${manifest.config.digest}`, '*/*')) as ExportedConfig;
  return config.mounts?.[0]?.layer.descriptor.digest;
}
