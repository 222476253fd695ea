import { storeImage } from '../oci/stored-image.js';
import type { BlobStore } from '../oci/blob-store.js';
import { sha256Digest } from '../oci/digest.js';
import { isImageIndex, type AnyImage, type ImageIndexSource, type ImageSource } from '../oci/image.js';
import { serializeIndex } from '../oci/json.js';
import {
  MediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type Platform,
} from '../oci/types.js';
import {
  ATTESTATION_MANIFEST,
  IN_TOTO_MEDIA_TYPE,
  PREDICATE_TYPE_ANNOTATION,
  REFERENCE_DIGEST_ANNOTATION,
  REFERENCE_TYPE_ANNOTATION,
  type Statement,
} from './types.js';

/**
 * BuildKit's attestation storage (docs/attestations/attestation-storage.md), in the form every
 * released BuildKit writes by default (`oci-artifact=false`): per platform image, one image
 * manifest whose layers are in-toto statements (`application/vnd.in-toto+json`, each annotated
 * with `in-toto.io/predicate-type`) and whose config is a plain image config for
 * `unknown/unknown` listing those layers as its diff_ids; in the index after every platform's
 * image, its descriptor with platform `unknown/unknown` and the annotations
 * `vnd.docker.reference.type=attestation-manifest` and `vnd.docker.reference.digest=<image>`.
 * Runtimes skip `unknown/unknown`; registries store it as any image; and since it is a valid
 * image manifest, every stratum writer (layout, archive, store, registry) carries it unchanged.
 *
 * A single-platform build with attestations becomes an index of two entries, as buildx writes it.
 */

export const UNKNOWN_PLATFORM: Platform = { architecture: 'unknown', os: 'unknown' };

/** The image a platform entry of the index names, and the statements about it. */
export interface PlatformStatements {
  readonly image: ImageSource;
  readonly statements: readonly Statement[];
}

function platformOf(image: ImageSource): Platform {
  if (image.descriptor.platform !== undefined) return image.descriptor.platform;
  const config = image.config.value;
  return {
    architecture: config.architecture,
    os: config.os,
    ...(config.variant === undefined ? {} : { variant: config.variant }),
  };
}

/** The platform images of a build's result, in index order. */
export function platformImages(image: AnyImage): readonly ImageSource[] {
  return isImageIndex(image) ? image.images : [image];
}

async function attestationManifest(
  target: ImageSource,
  statements: readonly Statement[],
  blobs: BlobStore,
  name: string,
): Promise<ImageSource> {
  const layers: Descriptor[] = [];
  for (const statement of statements) {
    const bytes = Buffer.from(JSON.stringify(statement));
    const info = await blobs.putBytes(bytes);
    layers.push({
      mediaType: IN_TOTO_MEDIA_TYPE,
      digest: info.digest,
      size: info.size,
      annotations: { [PREDICATE_TYPE_ANNOTATION]: statement.predicateType },
    });
  }
  // Statements are stored as they are: their "uncompressed" digest is their digest.
  const config: ImageConfig = {
    architecture: UNKNOWN_PLATFORM.architecture,
    os: UNKNOWN_PLATFORM.os,
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
  };
  return storeImage(blobs, {
    name: `${name} (attestations for ${target.manifest.digest})`,
    config,
    layers,
    descriptorAnnotations: {
      [REFERENCE_DIGEST_ANNOTATION]: target.manifest.digest,
      [REFERENCE_TYPE_ANNOTATION]: ATTESTATION_MANIFEST,
    },
    platform: UNKNOWN_PLATFORM,
  });
}

/**
 * The build's result with the statements attached: an image index holding every platform's
 * image (as the build made it) and, after them, one attestation manifest per platform that has
 * statements. The index keeps the build's own index annotations, if any.
 */
export async function attachStatements(
  built: AnyImage,
  perPlatform: readonly PlatformStatements[],
  blobs: BlobStore,
  name: string,
): Promise<ImageIndexSource> {
  const images = platformImages(built).map((image) => ({
    ...image,
    descriptor: { ...image.descriptor, platform: platformOf(image) },
  }));
  const attestations: ImageSource[] = [];
  for (const { image, statements } of perPlatform) {
    if (statements.length > 0) attestations.push(await attestationManifest(image, statements, blobs, name));
  }
  const entry = (image: ImageSource): Descriptor => ({
    mediaType: image.descriptor.mediaType,
    digest: image.descriptor.digest,
    size: image.descriptor.size,
    ...(image.descriptor.annotations === undefined ? {} : { annotations: image.descriptor.annotations }),
    ...(image.descriptor.platform === undefined ? {} : { platform: image.descriptor.platform }),
  });
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [...images, ...attestations].map(entry),
    ...(isImageIndex(built) && built.index.value.annotations !== undefined
      ? { annotations: built.index.value.annotations }
      : {}),
  };
  const raw = serializeIndex(index);
  const info = await blobs.putBytes(raw);
  return {
    name,
    descriptor: { mediaType: MediaType.ociIndex, digest: info.digest, size: info.size },
    index: { value: index, raw, digest: sha256Digest(raw) },
    images: [...images, ...attestations],
    close: () => Promise.resolve(),
  };
}

/** Whether an index entry is an attestation manifest (BuildKit's annotation, then its platform). */
export function isAttestationEntry(descriptor: Descriptor): boolean {
  const type = descriptor.annotations?.[REFERENCE_TYPE_ANNOTATION];
  if (type !== undefined) return type === ATTESTATION_MANIFEST;
  return false;
}
