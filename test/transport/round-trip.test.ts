import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyImage, openImage, writeImage } from '../../src/transport/images.js';
import type { ImageSource } from '../../src/oci/image.js';
import { verifyOciLayout } from '../../src/transport/index.js';
import { documentProblems } from '../../src/oci/validate.js';
import { makeImage, readAllBlobs } from '../oci/image-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-round-trip-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const transports = {
  oci: (name: string) => `oci:${join(dir, name)}:v1`,
  'oci-archive': (name: string) => `oci-archive:${join(dir, `${name}.tar`)}:v1`,
  'docker-archive': (name: string) => `docker-archive:${join(dir, `${name}.docker.tar`)}:stratum-test/rt:v1`,
} as const;
type Transport = keyof typeof transports;

async function uncompressedLayers(source: ImageSource): Promise<string[]> {
  const { openLayerTar } = await import('../../src/oci/layer.js');
  const out: string[] = [];
  for (const [index, layer] of source.manifest.value.layers.entries()) {
    const chunks: Buffer[] = [];
    const diffId = source.config.value.rootfs.diff_ids[index]!;
    for await (const chunk of await openLayerTar(source, layer, { diffId })) chunks.push(chunk as Buffer);
    out.push(Buffer.concat(chunks).toString('base64'));
  }
  return out;
}

describe('round trips between oci:, oci-archive: and docker-archive:', () => {
  const pairs: [Transport, Transport][] = [];
  for (const from of Object.keys(transports) as Transport[])
    for (const to of Object.keys(transports) as Transport[]) pairs.push([from, to]);

  it.each(pairs)(
    '%s → %s keeps config, diff_ids and layer contents, every blob verified',
    async (from, to) => {
      const image = await makeImage(
        [{ files: { 'etc/': '', 'etc/a': 'alpha' } }, { files: { 'b.txt': 'beta' }, compression: 'none' }],
        {
          emptyHistory: true,
        },
      );
      const first = transports[from](`${from}-${to}-a`);
      const second = transports[to](`${from}-${to}-b`);
      await writeImage(image.source, first);
      const middle = await openImage(first);
      await readAllBlobs(middle);
      const written = await writeImage(middle, second);
      await middle.close();
      const back = await openImage(second);
      try {
        const blobs = await readAllBlobs(back);
        expect(blobs.size).toBe(3);
        expect(back.config.raw.equals(image.source.config.raw)).toBe(true);
        expect(back.config.digest).toBe(image.source.config.digest);
        expect(written.digest).toBe(back.manifest.digest);
        expect(await uncompressedLayers(back)).toEqual(image.tars.map((bytes) => bytes.toString('base64')));
        // oci → oci-archive → oci keeps the manifest byte for byte; docker-archive inflates layers.
        if (from !== 'docker-archive' && to !== 'docker-archive')
          expect(back.manifest.digest).toBe(image.source.manifest.digest);
        expect(documentProblems('manifest', JSON.parse(back.manifest.raw.toString()))).toEqual([]);
        expect(documentProblems('config', JSON.parse(back.config.raw.toString()))).toEqual([]);
      } finally {
        await back.close();
      }
    },
  );

  it('oci: writes a layout that verifies end to end and whose index.json and oci-layout pass the schemas', async () => {
    const image = await makeImage([{ files: { x: 'x' } }]);
    await writeImage(image.source, `oci:${join(dir, 'valid')}:latest`);
    expect((await verifyOciLayout(join(dir, 'valid'))).blobs).toBe(3);
    expect(
      documentProblems('index', JSON.parse(readFileSync(join(dir, 'valid', 'index.json'), 'utf8'))),
    ).toEqual([]);
    expect(
      documentProblems('layout', JSON.parse(readFileSync(join(dir, 'valid', 'oci-layout'), 'utf8'))),
    ).toEqual([]);
  });

  it('the same image written twice as an archive gives identical bytes', async () => {
    const image = await makeImage([{ files: { x: 'x' } }]);
    for (const kind of ['oci-archive', 'docker-archive'] as const) {
      await writeImage(image.source, `${kind}:${join(dir, `same-1-${kind}.tar`)}:app:1`);
      await writeImage(image.source, `${kind}:${join(dir, `same-2-${kind}.tar`)}:app:1`);
      expect(
        readFileSync(join(dir, `same-1-${kind}.tar`)).equals(readFileSync(join(dir, `same-2-${kind}.tar`))),
      ).toBe(true);
    }
  });
});

describe('oci: layouts hold many tags', () => {
  it('a new tag keeps the others and shares blobs; re-tagging replaces only that tag', async () => {
    const layout = join(dir, 'tags');
    const one = await makeImage([{ files: { shared: 'same' } }, { files: { one: '1' } }]);
    const two = await makeImage([{ files: { shared: 'same' } }, { files: { two: '2' } }]);
    await writeImage(one.source, `oci:${layout}:one`);
    await writeImage(two.source, `oci:${layout}:two`);
    const blobCount = readdirSync(join(layout, 'blobs', 'sha256')).length;
    expect(blobCount).toBe(3 + 3 + 2 - 1); // two manifests, two configs, three distinct layers... minus the shared one
    await writeImage(two.source, `oci:${layout}:one`);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    expect(
      index.manifests.map((entry) => [entry.annotations['org.opencontainers.image.ref.name'], entry.digest]),
    ).toEqual([
      ['two', two.source.manifest.digest],
      ['one', two.source.manifest.digest],
    ]);
    expect((await openImage(`oci:${layout}:one`)).manifest.digest).toBe(two.source.manifest.digest);
    expect(readdirSync(join(layout, 'blobs', 'sha256')).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('copyImage picks a platform out of a multi-platform layout', async () => {
    const { writeMultiPlatformLayout } = await import('../oci/image-fixture.js');
    const amd = await makeImage([{ files: { arch: 'amd64' } }], {
      platform: { os: 'linux', architecture: 'amd64' },
    });
    const arm = await makeImage([{ files: { arch: 'arm64' } }], {
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    writeMultiPlatformLayout(join(dir, 'multi'), 'latest', [amd, arm]);
    const result = await copyImage(`oci:${join(dir, 'multi')}:latest`, `oci:${join(dir, 'multi-arm')}:arm`, {
      platform: { os: 'linux', architecture: 'arm64' },
    });
    expect(result.digest).toBe(arm.source.manifest.digest);
  });
});
