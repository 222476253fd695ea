import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { VerifyingStream, sha256Digest } from '../../src/oci/digest.js';
import type { ImageSource } from '../../src/oci/image.js';
import { zstdSupported } from '../../src/oci/compression.js';
import { openLayerTar } from '../../src/oci/layer.js';
import { MediaType, type Descriptor } from '../../src/oci/types.js';
import { requireTool } from '../helpers/system.js';
import { makeImage, tarOf } from './image-fixture.js';

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sourceWith(blob: Buffer, base: ImageSource): { source: ImageSource; descriptor: Descriptor } {
  const descriptor: Descriptor = {
    mediaType: MediaType.ociLayerZstd,
    digest: sha256Digest(blob),
    size: blob.length,
  };
  return {
    descriptor,
    source: {
      ...base,
      openBlob: () =>
        Promise.resolve(
          Readable.from([blob]).pipe(new VerifyingStream(descriptor.digest, descriptor.size, 'z')),
        ),
    },
  };
}

describe('openLayerTar: the uncompressed tar of a layer', () => {
  it('inflates gzip layers and passes uncompressed ones through, checking the diff_id', async () => {
    const image = await makeImage([
      { files: { 'a.txt': 'A' } },
      { files: { 'b.txt': 'B' }, compression: 'none' },
    ]);
    const [gzipLayer, plainLayer] = image.source.manifest.value.layers;
    const diffIds = image.source.config.value.rootfs.diff_ids;
    expect(
      (await collect(await openLayerTar(image.source, gzipLayer!, { diffId: diffIds[0]! }))).equals(
        image.tars[0]!,
      ),
    ).toBe(true);
    expect(
      (await collect(await openLayerTar(image.source, plainLayer!, { diffId: diffIds[1]! }))).equals(
        image.tars[1]!,
      ),
    ).toBe(true);
  });

  it('a diff_id that does not match the inflated bytes errors the stream', async () => {
    const image = await makeImage([{ files: { 'a.txt': 'A' } }]);
    const layer = image.source.manifest.value.layers[0]!;
    const stream = await openLayerTar(image.source, layer, { diffId: `sha256:${'0'.repeat(64)}` });
    await expect(collect(stream)).rejects.toThrow(
      /diff_id.*content is sha256:[a-f0-9]{64}, expected sha256:0{64}/,
    );
  });

  it.skipIf(!requireTool('zstd', 'zstd'))(
    'zstd: inflated where node:zlib has zstd, else a one-line UNSUPPORTED error',
    async () => {
      const image = await makeImage([{ files: { 'a.txt': 'A' } }]);
      const tarBytes = await tarOf({ 'z.txt': 'Z' });
      const compressed = execFileSync('zstd', ['-q', '-c'], { input: tarBytes });
      const { source, descriptor } = sourceWith(compressed, image.source);
      if (zstdSupported()) {
        expect((await collect(await openLayerTar(source, descriptor))).equals(tarBytes)).toBe(true);
      } else {
        const error = await openLayerTar(source, descriptor).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(StratumError);
        expect((error as StratumError).code).toBe('UNSUPPORTED');
        expect((error as StratumError).message).toMatch(
          /layer sha256:[0-9a-f]{64}: zstd compression needs node:zlib's zstd, which this Node.js \(v20\.[0-9.]+\) lacks; Node.js 22.15 or later has it/,
        );
      }
    },
  );
});
