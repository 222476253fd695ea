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

/** Whether a media type names image content stratum understands (used to skip artifacts in an index). */
export function isImageMediaType(mediaType: string | undefined): boolean {
  return isIndexMediaType(mediaType) || isManifestMediaType(mediaType);
}
