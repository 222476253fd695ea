import { StratumError } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { ImageSource, LayerRef } from '../oci/image.js';

/** Copies an image's layers into the build's blob store (skipping those already there). */
export async function importLayers(
  source: ImageSource,
  blobs: BlobStore,
  signal?: AbortSignal,
): Promise<LayerRef[]> {
  const manifest = source.manifest.value;
  const diffIds = source.config.value.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${source.name}: the config lists ${diffIds.length} diff_ids but the manifest has ${manifest.layers.length} layers`,
    );
  }
  const layers: LayerRef[] = [];
  for (const [index, descriptor] of manifest.layers.entries()) {
    if (!(await blobs.has(descriptor.digest))) {
      const stream = await source.openBlob(descriptor, signal);
      await blobs.putStream(stream, descriptor.digest);
    }
    layers.push({ descriptor, diffId: diffIds[index]! });
  }
  return layers;
}
