import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCacheRef } from '../../src/cache/remote/cache-ref.js';
import { CacheExporter } from '../../src/cache/remote/export.js';
import { CACHE_ARTIFACT_TYPE, CACHE_CONFIG_MEDIA_TYPE } from '../../src/cache/remote/format.js';
import { RegistryCacheTransport } from '../../src/cache/remote/registry.js';
import { RemoteCaches, openImportedCache } from '../../src/cache/remote/remote-caches.js';
import { LayerCache, type CacheEntry } from '../../src/cache/store.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryContext } from '../../src/registry/context.js';
import { pushImage } from '../../src/registry/push.js';
import { RepositoryClient } from '../../src/registry/repository.js';
import type { Digest, ImageManifest } from '../../src/oci/types.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';
import {
  freePort,
  makeTestLayout,
  readTestLayout,
  startFaultProxy,
  startRegistry,
  type RunningRegistry,
} from '../registry/harness.js';

type CacheEvent = Extract<BuildEvent, { kind: 'cache' }>;

function outcomes(events: readonly BuildEvent[]): string[] {
  return events
    .filter((event): event is CacheEvent => event.kind === 'cache')
    .map((event) => (event.hit ? 'HIT' : 'MISS'));
}

function plain(entry: CacheEntry): CacheEntry {
  return {
    key: entry.key,
    layer: entry.layer,
    createdBy: entry.createdBy,
    instruction: entry.instruction,
    created: entry.created,
  };
}

function fakeKey(text: string): Digest {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** An entry for a step that changed nothing: valid without any blob. */
function emptyEntry(name: string): CacheEntry {
  return {
    key: fakeKey(name),
    layer: null,
    createdBy: `RUN ${name}`,
    instruction: `RUN ${name}`,
    created: '2024-01-01T00:00:00.000Z',
  };
}

/** Registry clients the exporters below made, each as a process of its own would have; closed at the end. */
const exportClients: RegistryClient[] = [];

/** A `--cache-to` over `client`, else over a client of its own (nothing remembered). */
function exporterTo(text: string, client?: RegistryClient): CacheExporter {
  const ref = parseCacheRef(text);
  const own = client ?? new RegistryClient();
  if (client === undefined) exportClients.push(own);
  return new CacheExporter(new RegistryCacheTransport(ref, own, { forPush: true }), ref);
}

afterAll(async () => {
  await Promise.all(exportClients.map((client) => client.close()));
});

describe('parseCacheRef', () => {
  it('registry:HOST/REPO defaults the tag to stratum-cache', () => {
    expect(parseCacheRef('registry:127.0.0.1:5000/app/cache')).toEqual({
      registry: '127.0.0.1:5000',
      repository: 'app/cache',
      tag: 'stratum-cache',
      name: 'registry:127.0.0.1:5000/app/cache:stratum-cache',
      ignoreError: false,
      // Cache mounts travel only when --cache-to says mounts=true (1 GiB at most by default).
      mounts: false,
      mountsMaxSize: 1024 ** 3,
    });
  });

  it('registry:HOST/REPO:TAG keeps the tag; a port is not a tag', () => {
    const ref = parseCacheRef('registry:localhost:5000/team/app:main');
    expect([ref.registry, ref.repository, ref.tag, ref.name]).toEqual([
      'localhost:5000',
      'team/app',
      'main',
      'registry:localhost:5000/team/app:main',
    ]);
  });

  it("BuildKit's type=registry,ref=... with mode=max and ignore-error", () => {
    const ref = parseCacheRef('type=registry,ref=ghcr.io/o/app:cache,mode=max,ignore-error=true');
    expect([ref.registry, ref.repository, ref.tag, ref.ignoreError]).toEqual([
      'ghcr.io',
      'o/app',
      'cache',
      true,
    ]);
  });

  it('Docker Hub names are normalised as for pull and push', () => {
    expect(parseCacheRef('registry:me/cache').name).toBe('registry:docker.io/me/cache:stratum-cache');
  });

  it.each([
    ['local:/tmp/cache', /unknown cache kind/],
    ['registry:', /no reference/],
    ['registry:docker://host:5000/x', /without a transport/],
    ['registry:Host/UPPER', /lowercase/],
    ['type=local,dest=/tmp', /only registry/],
    ['type=registry', /ref= is missing/],
    ['type=registry,ref=h:5000/a,mode=min', /mode=min is not supported/],
    ['type=registry,ref=h:5000/a,compression=zstd', /"compression" is not supported/],
    ['type=registry,ref', /not key=value/],
  ])('%s is a usage error naming the problem', (text, reason) => {
    expect(() => parseCacheRef(text)).toThrow(reason);
    try {
      parseCacheRef(text);
    } catch (error) {
      expect((error as { code?: string }).code).toBe('USAGE');
      expect((error as Error).message).toContain(text);
    }
  });

  it('--cache-to refuses a digest (a cache-from may pin one)', () => {
    const text = `registry:h:5000/a@sha256:${'a'.repeat(64)}`;
    expect(parseCacheRef(text).digest).toBe(`sha256:${'a'.repeat(64)}`);
    expect(() => exporterTo(text)).toThrow(/needs a tag/);
  });
});

const enabled = isRoot && requireTool('docker-registry', 'docker-registry');
const withSkopeo = enabled && requireTool('skopeo', 'skopeo');

describe.skipIf(!enabled)('shared cache in a registry (docker-registry on 127.0.0.1)', () => {
  let registry: RunningRegistry;
  let box: BuildSandbox;
  let context: string;
  /** Machine A's cache directory and what its build produced. */
  let cacheA: LayerCache;
  let digestA: string;
  let imageA: Awaited<ReturnType<BuildSandbox['build']>>['image'];
  let entriesA: CacheEntry[];
  let client: RegistryClient;

  function project(name: string, marker: string): string {
    return box.context(name, {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'COPY app.txt /app/app.txt',
        `RUN echo ${marker} > /built && cat /app/app.txt >> /built`,
        'WORKDIR /app',
        'RUN true',
        '',
      ].join('\n'),
      'app.txt': `application ${marker}\n`,
    });
  }

  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient();
    box = buildSandbox();
    context = project('shared', 'machine-a');
    const dirA = join(box.dir, 'cache-a');
    const built = await box.build(context, { cacheDir: dirA });
    expect(outcomes(built.events)).toEqual(['MISS', 'MISS', 'MISS', 'MISS']);
    digestA = built.digest;
    imageA = built.image;
    cacheA = new LayerCache(dirA);
    entriesA = (await cacheA.list()).map(plain);
  });

  afterAll(async () => {
    await client.close();
    await registry.stop();
    box.cleanup();
  });

  function layersOf(entries: readonly CacheEntry[]): Digest[] {
    return [
      ...new Set(entries.flatMap((entry) => (entry.layer === null ? [] : [entry.layer.descriptor.digest]))),
    ];
  }

  it('the build made a layer for every step: two with content, and the one empty layer twice (WORKDIR of an existing directory, RUN true)', () => {
    expect(entriesA).toHaveLength(4);
    expect(entriesA.filter((entry) => entry.layer === null)).toHaveLength(0);
    expect(layersOf(entriesA)).toHaveLength(3);
  });

  it('machine B imports what machine A exported, and its build hits every step without running one', async () => {
    const exporter = exporterTo(`registry:${registry.host}/app/cache:main`);
    for (const entry of entriesA) exporter.add(entry);
    const exported = await exporter.flush(cacheA.blobs);
    expect(exported).toMatchObject({ layers: 3, uploaded: 3, mounted: 0, existed: 0, entries: 4 });

    // The artifact: an OCI manifest of our artifactType whose layers are every referenced layer.
    const repo = new RepositoryClient(client, registry.host, 'app/cache');
    const fetched = await repo.getManifest('main');
    expect(fetched.digest).toBe(exported.digest);
    const manifest = JSON.parse(fetched.bytes.toString('utf8')) as ImageManifest;
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.artifactType).toBe(CACHE_ARTIFACT_TYPE);
    expect(manifest.config.mediaType).toBe(CACHE_CONFIG_MEDIA_TYPE);
    expect(manifest.layers.map((layer) => layer.digest).sort()).toEqual(layersOf(entriesA).sort());

    const dirB = join(box.dir, 'cache-b');
    const cacheB = new LayerCache(dirB);
    const source = await openImportedCache(`registry:${registry.host}/app/cache:main`);
    try {
      expect(source.name).toBe(`registry:${registry.host}/app/cache:main`);
      expect(source.warnings).toEqual([]);
      expect(source.size).toBe(4);
      for (const entry of entriesA) {
        const got = await source.get(entry.key, cacheB.blobs);
        expect(got).toEqual(entry);
        if (entry.layer !== null) {
          const digest = entry.layer.descriptor.digest;
          expect(readFileSync(cacheB.blobs.path(digest))).toEqual(readFileSync(cacheA.blobs.path(digest)));
        }
        // What the engine does with a remote hit: keep it locally for the next build.
        await cacheB.put(got!);
      }
      expect(await source.get(fakeKey('not there'), cacheB.blobs)).toBeUndefined();
    } finally {
      await source.close();
    }

    const built = await box.build(context, { cacheDir: dirB });
    expect(outcomes(built.events)).toEqual(['HIT', 'HIT', 'HIT', 'HIT']);
    expect(built.events.filter((event) => event.kind === 'materialize')).toEqual([]);
    expect(built.events.filter((event) => event.kind === 'step-output')).toEqual([]);
    expect(built.digest).toBe(digestA);
  });

  it.skipIf(!withSkopeo)(
    'skopeo reads the cache artifact: the manifest and the entries in its config',
    () => {
      const ref = `docker://${registry.host}/app/cache:main`;
      const manifest = JSON.parse(
        execFileSync('skopeo', ['inspect', '--tls-verify=false', '--raw', ref], { encoding: 'utf8' }),
      ) as ImageManifest;
      expect(manifest.artifactType).toBe(CACHE_ARTIFACT_TYPE);
      const config = JSON.parse(
        execFileSync('skopeo', ['inspect', '--tls-verify=false', '--config', '--raw', ref], {
          encoding: 'utf8',
        }),
      ) as { version: number; entries: CacheEntry[] };
      expect(config.version).toBe(1);
      expect(config.entries.map((entry) => entry.key).sort()).toEqual(
        entriesA.map((entry) => entry.key).sort(),
      );
    },
  );

  it('a layer already in the blob store is not downloaded again', async () => {
    const proxy = await startFaultProxy(registry.port);
    const source = await openImportedCache(`registry:${proxy.host}/app/cache:main`);
    try {
      const store = new BlobStore(join(box.dir, 'store-present'));
      // Two layers with content (not the empty layer two steps share).
      const [present, absent] = entriesA.filter(
        (entry) => entry.layer !== null && entry.layer.descriptor.size > 100,
      );
      const digest = present!.layer!.descriptor.digest;
      await store.putBytes(readFileSync(cacheA.blobs.path(digest)), digest);
      expect(await source.get(present!.key, store)).toEqual(present);
      expect(await source.get(absent!.key, store)).toEqual(absent);
      const blobGets = proxy.log.filter((line) => line.method === 'GET' && line.url.includes('/blobs/'));
      // The config blob, and the absent layer; not the present one.
      expect(blobGets.map((line) => line.url.slice(line.url.lastIndexOf('/') + 1))).toEqual([
        expect.stringMatching(/^sha256:/),
        absent!.layer!.descriptor.digest,
      ]);
      expect(blobGets.some((line) => line.url.includes(digest))).toBe(false);
    } finally {
      await source.close();
      await proxy.stop();
    }
  });

  it('layers pushed with the image are mounted into the cache repository, never uploaded twice', async () => {
    // One build: its push and its cache export share a registry context.
    const context = new RegistryContext();
    await pushImage(imageA, `${registry.host}/team/app:1`, { context });
    // The push remembered where the layers are: the export mounts them.
    const exportClient = new RegistryClient({ context });
    const first = exporterTo(`registry:${registry.host}/team/cache:main`, exportClient);
    for (const entry of entriesA) first.add(entry);
    try {
      expect(await first.flush(cacheA.blobs)).toMatchObject({
        layers: 3,
        uploaded: 0,
        mounted: 3,
        existed: 0,
      });
    } finally {
      await exportClient.close();
    }

    // Another process (a client of its own, nothing remembered): --mount-from names the image's repository.
    const second = exporterTo(`registry:${registry.host}/team/cache2:main`);
    for (const entry of entriesA) second.add(entry);
    expect(await second.flush(cacheA.blobs, { mountFrom: ['team/app'] })).toMatchObject({
      uploaded: 0,
      mounted: 3,
      existed: 0,
    });

    // And exporting again finds them there.
    expect(await second.flush(cacheA.blobs)).toMatchObject({ uploaded: 0, mounted: 0, existed: 3 });
  });

  it('exports to one tag accumulate (several builds or branches), newest first, capped', async () => {
    const ref = `registry:${registry.host}/app/merge:shared`;
    const one = exporterTo(ref);
    for (const name of ['a1', 'a2', 'a3']) one.add(emptyEntry(name));
    expect((await one.flush(cacheA.blobs)).entries).toBe(3);
    const two = exporterTo(ref);
    for (const name of ['b1', 'a2']) two.add(emptyEntry(name));
    expect((await two.flush(cacheA.blobs)).entries).toBe(4);

    const source = await openImportedCache(ref);
    expect([...source.keys()]).toEqual(['a2', 'b1', 'a3', 'a1'].map(fakeKey));
    expect(await source.get(fakeKey('a1'), cacheA.blobs)).toEqual(emptyEntry('a1'));
    await source.close();

    const three = exporterTo(ref);
    three.add(emptyEntry('c1'));
    expect((await three.flush(cacheA.blobs, { maxEntries: 3 })).entries).toBe(3);
    const capped = await openImportedCache(ref);
    expect([...capped.keys()]).toEqual(['c1', 'a2', 'b1'].map(fakeKey));
    await capped.close();
  });

  it('a tag that holds an image is not overwritten, and is no cache to read', async () => {
    const exporter = exporterTo(`registry:${registry.host}/team/app:1`);
    exporter.add(emptyEntry('x'));
    await expect(exporter.flush(cacheA.blobs)).rejects.toThrow(/not a stratum cache; refusing to overwrite/);
    const source = await openImportedCache(`registry:${registry.host}/team/app:1`);
    expect(source.size).toBe(0);
    expect(source.warnings).toHaveLength(1);
    expect(source.warnings[0]).toMatch(/not a stratum cache/);
    await source.close();
  });

  it('a tag that holds a Docker schema 2 image is not overwritten either', async () => {
    const layout = await makeTestLayout(join(box.dir, 'docker-typed'), [{ 'etc/x': 'x\n' }], {
      dockerTypes: true,
    });
    await pushImage(await readTestLayout(layout.dir), `${registry.host}/team/docker-typed:1`);
    const exporter = exporterTo(`registry:${registry.host}/team/docker-typed:1`);
    exporter.add(emptyEntry('y'));
    await expect(exporter.flush(cacheA.blobs)).rejects.toThrow(
      /holds a application\/vnd\.docker\.distribution\.manifest\.v2\+json, not a stratum cache/,
    );
    const fetched = await new RepositoryClient(client, registry.host, 'team/docker-typed').getManifest('1');
    expect(fetched.digest).toBe(layout.manifestDigest);
  });

  it('a missing tag is an empty cache, without a warning', async () => {
    const warnings: string[] = [];
    const source = await openImportedCache(`registry:${registry.host}/nobody/here:main`, {
      onWarning: (message) => warnings.push(message),
    });
    expect(source.size).toBe(0);
    expect(warnings).toEqual([]);
    expect(await source.get(entriesA[0]!.key, cacheA.blobs)).toBeUndefined();
    await source.close();
  });

  it('an unreachable registry is one warning and an empty cache', async () => {
    const port = await freePort();
    const warnings: string[] = [];
    const started = Date.now();
    const source = await openImportedCache(`registry:127.0.0.1:${port}/app/cache:main`, {
      onWarning: (message) => warnings.push(message),
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      new RegExp(`cache registry:127\\.0\\.0\\.1:${port}/app/cache:main: not used .*connection refused`),
    );
    expect(warnings[0]).not.toContain('\n');
    expect(source.size).toBe(0);
    expect(await source.get(entriesA[0]!.key, cacheA.blobs)).toBeUndefined();
    await source.close();
  });

  it('an entry whose diff_id does not match its layer is a miss, not a wrong image', async () => {
    const withLayer = entriesA.find((entry) => entry.layer !== null)!;
    const lie: CacheEntry = { ...withLayer, layer: { ...withLayer.layer!, diffId: fakeKey('lie') } };
    const exporter = exporterTo(`registry:${registry.host}/app/lies:main`);
    exporter.add(lie);
    await exporter.flush(cacheA.blobs);
    const warnings: string[] = [];
    const source = await openImportedCache(`registry:${registry.host}/app/lies:main`, {
      onWarning: (message) => warnings.push(message),
    });
    const store = new BlobStore(join(box.dir, 'store-lie'));
    expect(await source.get(lie.key, store)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/not used, step runs .*uncompressed content is sha256:/);
    expect(await store.has(withLayer.layer!.descriptor.digest)).toBe(false);
    // Forgotten after the failure: asked again, it is a plain miss without a second download.
    expect(await source.get(lie.key, store)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    await source.close();
  });

  it('a corrupted layer blob in the registry is a miss (a warning), and leaves nothing in the store', async () => {
    // A build of its own: its layers are corrupted in the registry's storage, which all
    // repositories share, so the other tests' layers must not be these.
    const ctx = project('corrupt', 'corrupt-me');
    const dir = join(box.dir, 'cache-corrupt');
    await box.build(ctx, { cacheDir: dir });
    const cache = new LayerCache(dir);
    const entries = (await cache.list()).map(plain);
    const exporter = exporterTo(`registry:${registry.host}/app/corrupt:main`);
    for (const entry of entries) exporter.add(entry);
    expect((await exporter.flush(cache.blobs)).uploaded).toBe(3);

    const victim = entries.find((entry) => entry.createdBy.includes('corrupt-me'))!;
    const hex = victim.layer!.descriptor.digest.slice('sha256:'.length);
    const data = join(
      registry.dir,
      'data',
      'docker',
      'registry',
      'v2',
      'blobs',
      'sha256',
      hex.slice(0, 2),
      hex,
      'data',
    );
    const bytes = readFileSync(data);
    const middle = bytes.length >> 1;
    bytes[middle] = bytes[middle]! ^ 0xff;
    writeFileSync(data, bytes);

    const warnings: string[] = [];
    const source = await openImportedCache(`registry:${registry.host}/app/corrupt:main`, {
      onWarning: (message) => warnings.push(message),
    });
    const storeRoot = join(box.dir, 'store-corrupt');
    const store = new BlobStore(storeRoot);
    expect(await source.get(victim.key, store)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(victim.layer!.descriptor.digest);
    expect(warnings[0]).toMatch(/not used, step runs/);
    expect(readdirSync(join(storeRoot, 'blobs', 'sha256'))).toEqual([]);
    // The other entries of the same cache still hit.
    const other = entries.find((entry) => entry.layer !== null && entry.key !== victim.key)!;
    expect(await source.get(other.key, store)).toEqual(other);
    await source.close();
  });

  it('RemoteCaches: a bad reference is a usage error before any network', async () => {
    await expect(RemoteCaches.open({ cacheFrom: ['local:/x'] })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(RemoteCaches.open({ cacheTo: ['registry:'] })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('RemoteCaches: lookup tries each --cache-from in order and saves a hit locally; record and export', async () => {
    const port = await freePort();
    const warnings: string[] = [];
    const shared = await RemoteCaches.open({
      cacheFrom: [`registry:127.0.0.1:${port}/down/cache`, `registry:${registry.host}/app/cache:main`],
      cacheTo: [`registry:${registry.host}/app/shared:out`],
      onWarning: (message) => warnings.push(message),
    });
    try {
      expect(shared.active).toBe(true);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`127.0.0.1:${port}`);
      const local = new LayerCache(join(box.dir, 'cache-shared'));
      for (const entry of entriesA) {
        expect(await local.get(entry.key)).toBeUndefined();
        const hit = await shared.lookup(entry.key, local);
        expect(hit).toEqual({ entry, source: `registry:${registry.host}/app/cache:main` });
        expect(await local.get(entry.key)).toEqual(entry);
        shared.record(entry);
      }
      expect(await shared.lookup(fakeKey('absent'), local)).toBeUndefined();
      const [result] = await shared.export(local.blobs);
      expect(result).toMatchObject({
        name: `registry:${registry.host}/app/shared:out`,
        layers: 3,
        uploaded: 0,
      });
      expect(result!.mounted + result!.existed).toBe(3);
    } finally {
      await shared.close();
    }
  });

  it('RemoteCaches: a failed export fails, unless ignore-error=true makes it a warning', async () => {
    const port = await freePort();
    const strict = await RemoteCaches.open({ cacheTo: [`registry:127.0.0.1:${port}/app/cache`] });
    strict.record(emptyEntry('strict'));
    await expect(strict.export(cacheA.blobs)).rejects.toThrow(
      new RegExp(`cache registry:127\\.0\\.0\\.1:${port}/app/cache:stratum-cache: .*connection refused`),
    );
    await strict.close();

    const warnings: string[] = [];
    const lenient = await RemoteCaches.open({
      cacheTo: [`type=registry,ref=127.0.0.1:${port}/app/cache,ignore-error=true`],
      onWarning: (message) => warnings.push(message),
    });
    lenient.record(emptyEntry('lenient'));
    expect(await lenient.export(cacheA.blobs)).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/not exported .*connection refused/);
    await lenient.close();
  });

  it('build --cache-to on machine A, then --cache-from on machine B: every step HITs from the registry', async () => {
    const ref = `registry:${registry.host}/app/e2e:main`;
    const a = await box.build(context, {
      cacheDir: join(box.dir, 'e2e-a'),
      cacheTo: [ref],
    });
    expect(outcomes(a.events)).toEqual(['MISS', 'MISS', 'MISS', 'MISS']);
    const b = await box.build(context, {
      cacheDir: join(box.dir, 'e2e-b'),
      cacheFrom: [ref],
    });
    expect(outcomes(b.events)).toEqual(['HIT', 'HIT', 'HIT', 'HIT']);
    expect(
      b.events.filter((event): event is CacheEvent => event.kind === 'cache').map((event) => event.source),
    ).toEqual([ref, ref, ref, ref]);
    expect(b.events.filter((event) => event.kind === 'step-output')).toEqual([]);
    expect(b.digest).toBe(a.digest);

    // An unreachable --cache-from: a warning, and a normal build.
    const port = await freePort();
    const c = await box.build(context, {
      cacheDir: join(box.dir, 'e2e-c'),
      cacheFrom: [`registry:127.0.0.1:${port}/app/e2e:main`],
    });
    expect(outcomes(c.events)).toEqual(['MISS', 'MISS', 'MISS', 'MISS']);
    expect(c.warnings.some((warning) => warning.includes(`127.0.0.1:${port}`))).toBe(true);
  });
});
