import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { VerifyingStream, sha256Digest } from '../../src/oci/digest.js';
import type { ImageSource } from '../../src/oci/image.js';
import { configShape, manifestShape, serializeIndex, toRaw } from '../../src/oci/json.js';
import {
  MediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from '../../src/oci/types.js';

/**
 * Small images built in memory for the transport tests: real tar layers (tar-stream), gzip or
 * not, a config whose diff_ids and history match, and an ImageSource over them that verifies
 * what it hands out like every real reader does.
 */

export async function tarOf(files: Readonly<Record<string, string>>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const [name, content] of Object.entries(files)) {
    if (name.endsWith('/')) {
      pack.entry({ name, type: 'directory', mode: 0o755, mtime: new Date(1_700_000_000_000) });
    } else {
      pack.entry({ name, mode: 0o644, mtime: new Date(1_700_000_000_000) }, content);
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface LayerSpec {
  readonly files: Readonly<Record<string, string>>;
  readonly compression?: 'gzip' | 'none';
  readonly createdBy?: string;
}

export interface TestImage {
  readonly source: ImageSource;
  readonly blobs: ReadonlyMap<Digest, Buffer>;
  readonly tars: readonly Buffer[];
}

export async function makeImage(
  layers: readonly LayerSpec[],
  options: { platform?: Platform; env?: string[]; emptyHistory?: boolean; name?: string } = {},
): Promise<TestImage> {
  const blobs = new Map<Digest, Buffer>();
  const tars: Buffer[] = [];
  const descriptors: Descriptor[] = [];
  for (const layer of layers) {
    const tarBytes = await tarOf(layer.files);
    tars.push(tarBytes);
    const gzip = (layer.compression ?? 'gzip') === 'gzip';
    const blob = gzip ? gzipSync(tarBytes) : tarBytes;
    const digest = sha256Digest(blob);
    blobs.set(digest, blob);
    descriptors.push({
      mediaType: gzip ? MediaType.ociLayerGzip : MediaType.ociLayer,
      digest,
      size: blob.length,
    });
  }
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const history = [
    ...(options.emptyHistory === true
      ? [{ created: '2024-01-02T03:04:05Z', created_by: 'ENV A=1', empty_layer: true }]
      : []),
    ...layers.map((layer, index) => ({
      created: '2024-01-02T03:04:05Z',
      created_by: layer.createdBy ?? `RUN step ${index}`,
    })),
  ];
  const config: ImageConfig = {
    created: '2024-01-02T03:04:05Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: options.env ?? ['PATH=/usr/bin:/bin'],
      Cmd: ['/bin/sh'],
      Labels: { 'org.example': 'yes' },
    },
    rootfs: { type: 'layers', diff_ids: tars.map((bytes) => sha256Digest(bytes)) },
    history,
  };
  const rawConfig = toRaw(config, configShape);
  blobs.set(rawConfig.digest, rawConfig.raw);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: rawConfig.digest, size: rawConfig.raw.length },
    layers: descriptors,
  };
  const rawManifest = toRaw(manifest, manifestShape);
  const source: ImageSource = {
    name: options.name ?? 'memory:test',
    descriptor: {
      mediaType: MediaType.ociManifest,
      digest: rawManifest.digest,
      size: rawManifest.raw.length,
    },
    manifest: rawManifest,
    config: rawConfig,
    openBlob(descriptor) {
      const bytes = blobs.get(descriptor.digest);
      if (bytes === undefined) return Promise.reject(new Error(`memory: no blob ${descriptor.digest}`));
      return Promise.resolve(
        Readable.from([bytes]).pipe(new VerifyingStream(descriptor.digest, descriptor.size, 'memory')),
      );
    },
    close: () => Promise.resolve(),
  };
  return { source, blobs, tars };
}

/** Writes a multi-platform OCI layout by hand (nested index under one tag) from images. */
export function writeMultiPlatformLayout(dir: string, tag: string, images: readonly TestImage[]): Digest {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (digest: Digest, bytes: Buffer): void => {
    writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
  };
  const entries: Descriptor[] = images.map((image) => {
    for (const [digest, bytes] of image.blobs) put(digest, bytes);
    put(image.source.manifest.digest, image.source.manifest.raw);
    const config = image.source.config.value;
    return {
      ...image.source.descriptor,
      platform: {
        os: config.os,
        architecture: config.architecture,
        ...(config.variant ? { variant: config.variant } : {}),
      },
    };
  });
  const index = serializeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries });
  const indexDigest = sha256Digest(index);
  put(indexDigest, index);
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(dir, 'index.json'),
    serializeIndex({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: MediaType.ociIndex,
          digest: indexDigest,
          size: index.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return indexDigest;
}

/** Reads every blob of a source through its verifying stream; returns digest → bytes. */
export async function readAllBlobs(source: ImageSource): Promise<Map<Digest, Buffer>> {
  const out = new Map<Digest, Buffer>();
  for (const descriptor of [source.manifest.value.config, ...source.manifest.value.layers]) {
    const chunks: Buffer[] = [];
    for await (const chunk of await source.openBlob(descriptor)) chunks.push(chunk as Buffer);
    out.set(descriptor.digest, Buffer.concat(chunks));
  }
  return out;
}
