import { execFileSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { sha256Digest } from '../../src/oci/digest.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import {
  RegistryClient,
  RepositoryClient,
  openRegistryImage,
  pullImage,
  pushImage,
  type PushProgress,
} from '../../src/registry/index.js';
import { requireTool } from '../helpers/system.js';
import {
  makeTestLayout,
  noise,
  readTestLayout,
  startRegistry,
  tempDir,
  type RunningRegistry,
  type TestImage,
} from './harness.js';

const enabled = requireTool('docker-registry', 'docker-registry') && requireTool('skopeo', 'skopeo');

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe.skipIf(!enabled)('registry, anonymous (docker-registry on 127.0.0.1)', () => {
  let registry: RunningRegistry;
  let work: string;
  let image: TestImage;

  beforeAll(async () => {
    registry = await startRegistry();
    work = await tempDir('push-anon');
    image = await makeTestLayout(join(work, 'layout'), [
      { 'etc/hello': 'hello\n' },
      { 'data/noise.bin': noise(300_000, 1) },
      { 'data/more.bin': noise(70_000, 2) },
    ]);
  });

  afterAll(async () => {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('push streams every blob before the manifest, and skopeo inspect reads it back', async () => {
    const source = await readTestLayout(image.dir);
    const events: PushProgress[] = [];
    const result = await pushImage(source, `${registry.host}/test/app:v1`, {
      onProgress: (e) => events.push(e),
    });
    expect(result.digest).toBe(image.manifestDigest);
    expect(result.blobs).toEqual({ existed: 0, mounted: 0, uploaded: 4 });
    const manifestAt = events.findIndex((e) => e.kind === 'manifest');
    const lastBlob = events.map((e) => e.kind).lastIndexOf('blob-done');
    expect(lastBlob).toBeLessThan(manifestAt);
    expect(events.some((e) => e.kind === 'blob-bytes')).toBe(true);

    const inspect = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/test/app:v1`], {
        encoding: 'utf8',
      }),
    ) as { Digest: string; Layers: string[]; Architecture: string };
    expect(inspect.Digest).toBe(image.manifestDigest);
    expect(inspect.Layers).toEqual(image.manifest.layers.map((l) => l.digest));
    expect(inspect.Architecture).toBe('amd64');
  });

  it('skopeo copy reads back what stratum pushed, byte for byte', async () => {
    const out = join(work, 'skopeo-out');
    execFileSync(
      'skopeo',
      ['copy', '--src-tls-verify=false', `docker://${registry.host}/test/app:v1`, `oci:${out}:copied`],
      {
        stdio: 'ignore',
      },
    );
    const copied = await readTestLayout(out, 'copied');
    expect(copied.manifest.digest).toBe(image.manifestDigest);
    for (const layer of image.manifest.layers) {
      const ours = await readFile(join(image.dir, 'blobs', 'sha256', layer.digest.slice(7)));
      const theirs = await readFile(join(out, 'blobs', 'sha256', layer.digest.slice(7)));
      expect(theirs.equals(ours)).toBe(true);
    }
  });

  it('stratum pulls what skopeo pushed (Docker schema 2 types), verified, into a blob store', async () => {
    const dockerLayout = await makeTestLayout(join(work, 'docker-layout'), [{ 'x/y': noise(50_000, 3) }]);
    // skopeo converts to Docker schema 2 on the way, as `docker push` would have written it.
    execFileSync(
      'skopeo',
      [
        'copy',
        '--format',
        'v2s2',
        '--dest-tls-verify=false',
        `oci:${dockerLayout.dir}:latest`,
        `docker://${registry.host}/from/skopeo:1`,
      ],
      {
        stdio: 'ignore',
      },
    );
    const store = new BlobStore(join(work, 'pulled'));
    const pulled = await pullImage(`${registry.host}/from/skopeo:1`, store);
    expect(pulled.descriptor.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(pulled.config.value.rootfs.diff_ids).toEqual(dockerLayout.config.rootfs.diff_ids);
    for (const layer of pulled.manifest.value.layers) {
      expect(await store.has(layer.digest)).toBe(true);
      const bytes = await readAll(await pulled.openBlob(layer));
      expect(sha256Digest(bytes)).toBe(layer.digest);
    }
    expect(await store.has(pulled.manifest.digest)).toBe(true);
  });

  it('pulling again skips blobs the store already has', async () => {
    const store = new BlobStore(join(work, 'pulled-twice'));
    await pullImage(`${registry.host}/test/app:v1`, store);
    const kinds: string[] = [];
    await pullImage(`${registry.host}/test/app:v1`, store, { onProgress: (e) => kinds.push(e.kind) });
    expect(kinds.filter((k) => k === 'blob-fetched')).toEqual([]);
    expect(kinds.filter((k) => k === 'blob-present')).toHaveLength(4);
  });

  it('a second push finds every blob with HEAD and uploads nothing', async () => {
    const result = await pushImage(await readTestLayout(image.dir), `${registry.host}/test/app:v1-again`);
    expect(result.blobs).toEqual({ existed: 4, mounted: 0, uploaded: 0 });
  });

  it('a push to another repository of the same registry mounts the blobs instead of uploading', async () => {
    const result = await pushImage(await readTestLayout(image.dir), `${registry.host}/other/repo:v1`, {
      mountFrom: ['test/app'],
    });
    expect(result.blobs).toEqual({ existed: 0, mounted: 4, uploaded: 0 });
    const inspect = execFileSync(
      'skopeo',
      ['inspect', '--tls-verify=false', `docker://${registry.host}/other/repo:v1`],
      {
        encoding: 'utf8',
      },
    );
    expect(inspect).toContain(image.manifestDigest);
  });

  it('chunked upload (PATCH per chunk) and several tags give the same manifest under each tag', async () => {
    const layout = await makeTestLayout(join(work, 'chunked'), [{ 'big.bin': noise(120_000, 9) }]);
    const result = await pushImage(await readTestLayout(layout.dir), `${registry.host}/chunked/app:a`, {
      chunkSize: 10_000,
      tags: ['b', 'c'],
    });
    expect(result.references).toEqual([
      `${registry.host}/chunked/app:a`,
      `${registry.host}/chunked/app:b`,
      `${registry.host}/chunked/app:c`,
    ]);
    const client = new RegistryClient();
    try {
      const repo = new RepositoryClient(client, registry.host, 'chunked/app');
      for (const tag of ['a', 'b', 'c'])
        expect((await repo.getManifest(tag)).digest).toBe(layout.manifestDigest);
      expect((await repo.listTags()).sort()).toEqual(['a', 'b', 'c']);
    } finally {
      await client.close();
    }
  });

  it('pull by digest, lazily: blobs come from the registry when opened, verified', async () => {
    const source = await openRegistryImage(`${registry.host}/test/app@${image.manifestDigest}`);
    try {
      expect(source.manifest.digest).toBe(image.manifestDigest);
      expect(source.name).toBe(`docker://${registry.host}/test/app@${image.manifestDigest}`);
      const layer = source.manifest.value.layers[1]!;
      const bytes = await readAll(await source.openBlob(layer));
      expect(sha256Digest(bytes)).toBe(layer.digest);
    } finally {
      await source.close();
    }
  });

  it('an index is resolved by platform; a platform it lacks is a one-line NOT_FOUND listing what it has', async () => {
    const arm = await makeTestLayout(join(work, 'arm'), [{ arm: 'arm64' }], { architecture: 'arm64' });
    const client = new RegistryClient();
    try {
      await pushImage(await readTestLayout(arm.dir), `${registry.host}/multi/app@${arm.manifestDigest}`, {
        client,
      });
      await pushImage(await readTestLayout(image.dir), `${registry.host}/multi/app@${image.manifestDigest}`, {
        client,
      });
      const index: ImageIndex = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: image.manifestDigest as `sha256:${string}`,
            size: (await readTestLayout(image.dir)).manifest.raw.length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: arm.manifestDigest as `sha256:${string}`,
            size: (await readTestLayout(arm.dir)).manifest.raw.length,
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
        ],
      };
      const repo = new RepositoryClient(client, registry.host, 'multi/app');
      await repo.putManifest(
        'multi',
        Buffer.from(JSON.stringify(index)),
        'application/vnd.oci.image.index.v1+json',
      );

      const armImage = await openRegistryImage(`${registry.host}/multi/app:multi`, {
        client,
        platform: { os: 'linux', architecture: 'arm64' },
      });
      expect(armImage.config.value.architecture).toBe('arm64');
      expect(armImage.descriptor.platform?.architecture).toBe('arm64');
      const amdImage = await openRegistryImage(`${registry.host}/multi/app:multi`, {
        client,
        platform: { os: 'linux', architecture: 'amd64' },
      });
      expect(amdImage.manifest.digest).toBe(image.manifestDigest);

      await expect(
        openRegistryImage(`${registry.host}/multi/app:multi`, {
          client,
          platform: { os: 'linux', architecture: 's390x' },
        }),
      ).rejects.toThrow(
        `docker://${registry.host}/multi/app:multi: no manifest for platform linux/s390x (available: linux/amd64, linux/arm64/v8)`,
      );
    } finally {
      await client.close();
    }
  });

  it('cache primitives: an OCI index with artifactType and annotations, blobs mounted from another repository, fetched back by tag byte for byte', async () => {
    const client = new RegistryClient();
    try {
      const cache = new RepositoryClient(client, registry.host, 'ci/cache');
      const layer = image.manifest.layers[1]!;
      expect(await cache.blobExists(layer.digest)).toBeUndefined();
      expect(await cache.mountBlob(layer.digest, 'test/app')).toBe(true);
      expect(await cache.blobExists(layer.digest)).toBe(layer.size);

      const emptyConfig = Buffer.from('{}');
      const emptyDigest = sha256Digest(emptyConfig);
      await cache.uploadBlob(
        () => Promise.resolve(BlobStreamOf(emptyConfig)),
        emptyDigest,
        emptyConfig.length,
      );
      const entry: ImageManifest = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: 'application/vnd.stratum.cache.v1',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 },
        layers: [{ ...layer, annotations: { 'dev.stratum.cache.key': 'sha256:abc' } }],
        annotations: { 'dev.stratum.cache.version': '1' },
      };
      const entryBytes = Buffer.from(JSON.stringify(entry));
      const entryDigest = await cache.putManifest(
        sha256Digest(entryBytes),
        entryBytes,
        'application/vnd.oci.image.manifest.v1+json',
      );
      const index: ImageIndex = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        artifactType: 'application/vnd.stratum.cache.v1',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: entryDigest,
            size: entryBytes.length,
            artifactType: 'application/vnd.stratum.cache.v1',
          },
        ],
        annotations: { 'dev.stratum.cache.created': '2024-01-01T00:00:00Z' },
      };
      const indexBytes = Buffer.from(JSON.stringify(index, null, 2));
      await cache.putManifest('buildcache', indexBytes, 'application/vnd.oci.image.index.v1+json');

      const fetched = await cache.getManifest('buildcache');
      expect(fetched.bytes.equals(indexBytes)).toBe(true);
      expect(fetched.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      const head = await cache.headManifest('buildcache');
      expect(head?.digest).toBe(sha256Digest(indexBytes));
      const blob = await readAll(cache.fetchBlob(layer.digest, { size: layer.size }));
      expect(sha256Digest(blob)).toBe(layer.digest);
      expect(await cache.headManifest('nothing-here')).toBeUndefined();
    } finally {
      await client.close();
    }
  });

  it('a missing tag is a one-line NOT_FOUND naming the reference and MANIFEST_UNKNOWN', async () => {
    const error = await openRegistryImage(`${registry.host}/test/app:nope`).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NOT_FOUND' });
    const message = (error as Error).message;
    expect(message).toContain(`docker://${registry.host}/test/app:nope`);
    expect(message).toContain('MANIFEST_UNKNOWN');
    expect(message).not.toContain('\n');
  });

  it('a manifest that is not a container image is UNSUPPORTED, naming the reference and the media type', async () => {
    const client = new RegistryClient();
    try {
      const repo = new RepositoryClient(client, registry.host, 'test/app');
      const config = Buffer.from('{"chart":"x"}');
      const configDigest = sha256Digest(config);
      await repo.uploadBlob(() => BlobStreamOf(config), configDigest, config.length);
      const artifact = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: {
            mediaType: 'application/vnd.cncf.helm.config.v1+json',
            digest: configDigest,
            size: config.length,
          },
          layers: [],
        }),
      );
      await repo.putManifest('chart', artifact, 'application/vnd.oci.image.manifest.v1+json');
      await expect(openRegistryImage(`${registry.host}/test/app:chart`, { client })).rejects.toThrow(
        `docker://${registry.host}/test/app:chart: not a container image (config media type application/vnd.cncf.helm.config.v1+json)`,
      );
    } finally {
      await client.close();
    }
  });

  it('a refused connection and an unknown host are one-line errors naming the reference', async () => {
    const refused = (await openRegistryImage('127.0.0.1:1/test/app:v1').catch((e: unknown) => e)) as Error;
    expect(refused.message).toMatch(
      /^docker:\/\/127\.0\.0\.1:1\/test\/app:v1: fetching manifest: contacting registry 127\.0\.0\.1:1: connection refused/,
    );
    const unknown = (await openRegistryImage('no-such-host.invalid/test/app:v1', {
      retry: { attempts: 1 },
    }).catch((e: unknown) => e)) as Error;
    expect(unknown.message).toMatch(/^docker:\/\/no-such-host\.invalid\/test\/app:v1: .*unknown host/);
    expect(unknown.message).not.toContain('\n');
  });
});

function BlobStreamOf(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}
