/**
 * Images by reference: `openImage`, `writeImage` and `copyImage` pick the transport a reference
 * names (`oci:`, `oci-archive:`, `docker-archive:`, `docker-daemon:`, the local store) or the
 * registry (`docker://`), as go-containerregistry's crane sits over its layout and remote
 * packages. transport/ and registry/ never import each other; this folder joins them.
 */
export {
  openImage,
  openAllPlatforms,
  writeImage,
  copyImage,
  type ImageOptions,
  type OpenImageOptions,
} from './images.js';
