import { MediaType } from './types.js';

/**
 * Classifies media types across the two families stratum reads: OCI and Docker schema 2.
 * Docker's media types are kept as found (a Docker manifest stored in an OCI layout stays a
 * Docker manifest, since re-encoding it would change its digest).
 */

export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

export function isDockerMediaType(mediaType: string): boolean {
  return mediaType.startsWith('application/vnd.docker.');
}

export type Compression = 'none' | 'gzip' | 'zstd';

/**
 * The compression a layer media type declares, or undefined when the type does not say
 * (artifacts such as `application/tar+gzip` are recognised by suffix; anything else is left to
 * magic-byte detection).
 */
export function layerCompression(mediaType: string): Compression | undefined {
  switch (mediaType) {
    case MediaType.ociLayer:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar':
    case 'application/vnd.docker.image.rootfs.diff.tar':
      return 'none';
    case MediaType.ociLayerGzip:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
    case MediaType.dockerLayerGzip:
    case MediaType.dockerForeignLayerGzip:
      return 'gzip';
    case MediaType.ociLayerZstd:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd':
      return 'zstd';
    default:
      if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip')) return 'gzip';
      if (mediaType.endsWith('+zstd')) return 'zstd';
      if (mediaType.endsWith('.tar') || mediaType.endsWith('/tar')) return 'none';
      return undefined;
  }
}

/** Compression from the first bytes of a blob: gzip 1f 8b, zstd 28 b5 2f fd, else none. */
export function sniffCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd)
    return 'zstd';
  return 'none';
}

/** The OCI layer media type for a compression, as stratum writes it. */
export function ociLayerMediaType(compression: Compression): string {
  switch (compression) {
    case 'none':
      return MediaType.ociLayer;
    case 'gzip':
      return MediaType.ociLayerGzip;
    case 'zstd':
      return MediaType.ociLayerZstd;
  }
}

/** Whether a media type names image content stratum understands (used to skip artifacts in an index). */
export function isImageMediaType(mediaType: string | undefined): boolean {
  return isIndexMediaType(mediaType) || isManifestMediaType(mediaType);
}
