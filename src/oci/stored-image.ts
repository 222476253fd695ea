import type { BlobStore } from './blob-store.js';
import { sha256Digest } from './digest.js';
import type { ImageSource } from './image.js';
import { serializeConfig, serializeManifest } from './json.js';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from './types.js';

/**
 * An image made here, from a config and layers already in `blobs`: the config and the manifest
 * over it are serialised deterministically and stored beside the layers, and the image is handed
 * out as an ImageSource that any writer (layout, archive, store, registry) can take. The one way
 * a build's image, a named context's image, an attestation manifest and a cosign signature image
 * are made.
 */
export async function storeImage(
  blobs: BlobStore,
  image: {
    readonly name: string;
    readonly config: ImageConfig;
    readonly layers: readonly Descriptor[];
    /** On the descriptor that points at the manifest (an index entry's annotations). */
    readonly descriptorAnnotations?: Readonly<Record<string, string>>;
    /** The platform an index entry for it names (the attestation manifest's unknown/unknown). */
    readonly platform?: Descriptor['platform'];
  },
): Promise<ImageSource> {
  const configBytes = serializeConfig(image.config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256Digest(configBytes), size: configBytes.length },
    layers: [...image.layers],
  };
  const manifestBytes = serializeManifest(manifest);
  // Both stored side by side (each is flushed to disk before it gets its name): nothing reads
  // either until the image is handed out.
  const [, manifestInfo] = await Promise.all([
    blobs.putBytes(configBytes, manifest.config.digest),
    blobs.putBytes(manifestBytes),
  ]);
  const descriptor: Descriptor = {
    mediaType: MediaType.ociManifest,
    digest: manifestInfo.digest,
    size: manifestInfo.size,
    ...(image.descriptorAnnotations === undefined ? {} : { annotations: { ...image.descriptorAnnotations } }),
    ...(image.platform === undefined ? {} : { platform: image.platform }),
  };
  return blobStoreImage(blobs, image.name, descriptor, manifest, manifestBytes, image.config, configBytes);
}

/** An image whose manifest, config and layers are already in `blobs`, as an ImageSource. */
export function blobStoreImage(
  blobs: BlobStore,
  name: string,
  descriptor: Descriptor,
  manifest: ImageManifest,
  manifestBytes: Buffer,
  config: ImageConfig,
  configBytes: Buffer,
): ImageSource {
  return {
    name,
    descriptor,
    manifest: { value: manifest, raw: manifestBytes, digest: sha256Digest(manifestBytes) },
    config: { value: config, raw: configBytes, digest: sha256Digest(configBytes) },
    openBlob: (blob) => Promise.resolve(blobs.read(blob.digest, { verify: true, size: blob.size })),
    // The blob store verified every blob as it was written.
    localBlobPath: (blob) => blobs.path(blob.digest),
    close: () => Promise.resolve(),
  };
}
