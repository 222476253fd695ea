/**
 * Images on disk and in daemons, one folder per transport with its reader and writer together
 * (as go-containerregistry's pkg/v1/layout, tarball and daemon), and `images.ts`, which picks the
 * transport a reference names. The registry is the `registry/` folder's.
 */
export {
  openImage,
  openAllPlatforms,
  writeImage,
  copyImage,
  type ImageOptions,
  type OpenImageOptions,
} from './images.js';
export { openOciLayout, openOciLayoutIndex, verifyOciLayout } from './layout/reader.js';
export { writeOciLayout, type LayoutWriteOptions, type WriteResult } from './layout/writer.js';
export { openOciArchive, openOciArchiveIndex } from './oci-archive/reader.js';
export { writeOciArchive } from './oci-archive/writer.js';
export { openDockerArchive } from './docker-archive/reader.js';
export { writeDockerArchive } from './docker-archive/writer.js';
export { openFromDaemon } from './docker-daemon/reader.js';
export {
  loadIntoDockerDaemon,
  dockerSocketPath,
  type DaemonLoadOptions,
  type DaemonLoadResult,
} from './docker-daemon/writer.js';
export { ImageStore, defaultDataDir, type StoredImage } from './store/store.js';
export { openArchive, type OpenedArchive } from './archive-file.js';
