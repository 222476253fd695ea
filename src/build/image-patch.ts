import type { BlobStore } from '../oci/blob-store.js';
import type { ImageSource } from '../oci/image.js';
import { serializeConfig, serializeManifest } from '../oci/json.js';
import { MediaType, type ImageConfig, type ImageManifest } from '../oci/types.js';
import { blobStoreImage } from '../oci/stored-image.js';

/**
 * `--label` and `--annotation` as BuildKit applies them: labels join the final image's config
 * (no history entry, no layer, so no step's cache key changes), annotations go on its manifest.
 * Returns the image unchanged when there is nothing to add.
 */
export async function withLabelsAndAnnotations(
  image: ImageSource,
  blobs: BlobStore,
  labels: Readonly<Record<string, string>>,
  annotations: Readonly<Record<string, string>>,
): Promise<ImageSource> {
  if (Object.keys(labels).length === 0 && Object.keys(annotations).length === 0) return image;
  const oldConfig = image.config.value;
  const config: ImageConfig =
    Object.keys(labels).length === 0
      ? oldConfig
      : { ...oldConfig, config: { ...oldConfig.config, Labels: { ...oldConfig.config?.Labels, ...labels } } };
  const configBytes = Object.keys(labels).length === 0 ? image.config.raw : serializeConfig(config);
  const configInfo = await blobs.putBytes(configBytes);
  const oldManifest = image.manifest.value;
  const manifest: ImageManifest = {
    ...oldManifest,
    config: { ...oldManifest.config, digest: configInfo.digest, size: configInfo.size },
    ...(Object.keys(annotations).length === 0
      ? {}
      : { annotations: { ...oldManifest.annotations, ...annotations } }),
  };
  const manifestBytes = serializeManifest(manifest);
  const manifestInfo = await blobs.putBytes(manifestBytes);
  return blobStoreImage(
    blobs,
    image.name,
    {
      mediaType: manifest.mediaType ?? MediaType.ociManifest,
      digest: manifestInfo.digest,
      size: manifestInfo.size,
    },
    manifest,
    manifestBytes,
    config,
    configBytes,
  );
}
