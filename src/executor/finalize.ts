import type { BlobStore } from '../oci/blob-store.js';
import { storeImage } from '../oci/stored-image.js';
import type { ImageIndexSource, ImageSource } from '../oci/image.js';
import { serializeIndex } from '../oci/json.js';
import { sha256Digest } from '../oci/digest.js';
import { MediaType, type ImageConfig, type ImageIndex, type Platform } from '../oci/types.js';
import type { ImageState } from './image-state.js';

/**
 * Turns a finished stage's state into an image (oci/stored-image.ts stores its config and
 * manifest beside the layers).
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
  return storeImage(blobs, { name, config, layers: state.layers.map((layer) => layer.descriptor) });
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
