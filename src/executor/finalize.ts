import type { BlobStore } from '../oci/blob-store.js';
import type { ImageIndexSource, ImageSource } from '../oci/image.js';
import { serializeConfig, serializeIndex, serializeManifest } from '../oci/json.js';
import { sha256Digest } from '../oci/digest.js';
import {
  MediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../oci/types.js';
import type { ImageState } from './image-state.js';

/**
 * Turns a finished stage's state into an image: the config and manifest are serialised
 * deterministically, stored beside the layers, and handed out as an ImageSource that any
 * writer (layout, archive, store, registry) can take.
 */
export async function finalizeImage(
  state: ImageState,
  blobs: BlobStore,
  name: string,
  created: string | undefined,
): Promise<ImageSource> {
  const config: ImageConfig = {
    ...(created === undefined ? {} : { created }),
    ...(state.author === undefined ? {} : { author: state.author }),
    architecture: state.platform.architecture,
    os: state.platform.os,
    ...(state.platform.variant === undefined ? {} : { variant: state.platform.variant }),
    config: state.config,
    rootfs: { type: 'layers', diff_ids: state.layers.map((layer) => layer.diffId) },
    history: state.history,
  };
  const configBytes = serializeConfig(config);
  const configInfo = await blobs.putBytes(configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configInfo.digest, size: configInfo.size },
    layers: state.layers.map((layer) => layer.descriptor),
  };
  const manifestBytes = serializeManifest(manifest);
  const manifestInfo = await blobs.putBytes(manifestBytes);
  const descriptor: Descriptor = {
    mediaType: MediaType.ociManifest,
    digest: manifestInfo.digest,
    size: manifestInfo.size,
  };
  return blobStoreImage(blobs, name, descriptor, manifest, manifestBytes, config, configBytes);
}

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

/**
 * A multi-platform build's result: an OCI image index with one entry per platform (its
 * descriptor carrying the target platform, as BuildKit writes it), stored beside the images.
 */
export async function finalizeIndex(
  images: readonly { readonly image: ImageSource; readonly platform: Platform }[],
  blobs: BlobStore,
  name: string,
): Promise<ImageIndexSource> {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.map(({ image, platform }) => ({
      mediaType: image.descriptor.mediaType,
      digest: image.descriptor.digest,
      size: image.descriptor.size,
      platform: {
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      },
    })),
  };
  const raw = serializeIndex(index);
  const info = await blobs.putBytes(raw);
  return {
    name,
    descriptor: { mediaType: MediaType.ociIndex, digest: info.digest, size: info.size },
    index: { value: index, raw, digest: sha256Digest(raw) },
    images: images.map(({ image, platform }) => ({
      ...image,
      descriptor: { ...image.descriptor, platform },
    })),
    close: () => Promise.resolve(),
  };
}
