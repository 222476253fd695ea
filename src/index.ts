/** stratum's public API: what the CLI and examples/ use. */
export { StratumError, isStratumError, type ErrorCode } from './errors.js';
export * from './oci/types.js';
export { BlobStore, type BlobInfo } from './oci/blob-store.js';
export { displayName } from './oci/file-names.js';
export { DigestingStream, VerifyingStream, sha256Digest, parseDigest, isDigest } from './oci/digest.js';
export {
  scanTree,
  emptySnapshot,
  diffSnapshots,
  isEmptyDiff,
  createScanSnapshotter,
  writeLayer,
  writeLayerEntries,
  writeDirectoryLayer,
  layerTarStream,
  layerEntries,
  extractLayer,
  extractLayerAuto,
  type LayerChange,
  type EntryMeta,
  type EntryStat,
  type FileType,
  type LayerDiff,
  type ScanOptions,
  type Snapshotter,
  type TreeSnapshot,
  type LayerWriteOptions,
  type WrittenLayer,
  type TarEntry,
  type ExtractOptions,
  type ExtractResult,
} from './snapshot/index.js';
export * from './parser/index.js';
export type { ImageSource, ImageReference, ReadImageOptions, LayerRef } from './oci/image.js';
export { isImageIndex, type AnyImage, type ImageIndexSource } from './oci/image.js';
export {
  canonicalJson,
  serializeManifest,
  serializeIndex,
  serializeConfig,
  serializeDescriptor,
  toRaw,
  type Shape,
} from './oci/json.js';
export { parseManifest, parseIndex, parseConfig, parseManifestOrIndex } from './oci/parse.js';
export * from './oci/media-types.js';
export {
  hostPlatform,
  parsePlatform,
  formatPlatform,
  normalizePlatform,
  platformMatches,
  selectPlatform,
} from './oci/platform.js';
export { documentProblems, type DocumentKind } from './oci/validate.js';
export {
  parseImageReference,
  formatImageReference,
  normalizeImageName,
  isValidImageName,
} from './oci/reference.js';
export { openOciLayout, openOciArchive, openDockerArchive, verifyOciLayout } from './oci/readers.js';
export { openLayerTar, layerBlobCompression, type LayerTarOptions } from './oci/layer.js';
export {
  zstdSupported,
  parseCompression,
  compressionName,
  DEFAULT_COMPRESSION,
  type Compression,
  type CompressionSpec,
} from './oci/compression.js';
export { summarizeImage, type ImageSummary, type LayerSummary } from './oci/inspect.js';
export { writeOciLayout, type LayoutWriteOptions, type WriteResult } from './oci-writer/layout-writer.js';
export { writeOciArchive } from './oci-writer/oci-archive-writer.js';
export { writeDockerArchive } from './oci-writer/docker-archive-writer.js';
export { ImageStore, defaultDataDir, type StoredImage } from './oci-writer/store.js';
export {
  openImage,
  openAllPlatforms,
  writeImage,
  copyImage,
  type ImageOptions,
  type OpenImageOptions,
} from './images.js';
export * from './push/index.js';
export * from './executor/sandbox/index.js';
export { resolveUser, resolveChown, type ResolvedUser, type ResolvedOwner } from './executor/users.js';
export { build, defaultCacheDir, type BuildOptions, type BuildResult } from './executor/build.js';
export { BuildSession } from './executor/session.js';
export {
  describeTarget,
  readContextFile,
  readContextDockerfile,
  type ContextFile,
} from './executor/context/index.js';
export type { BuildEvent, ProgressListener, StepRef, CacheComponent } from './executor/progress.js';
export { LayerCache, type CacheEntry, type CacheEntryInfo } from './cache/store.js';
export {
  parseCacheRef,
  RegistryCacheSource,
  RegistryCacheExporter,
  DEFAULT_CACHE_TAG,
  CACHE_ARTIFACT_TYPE,
  CACHE_CONFIG_MEDIA_TYPE,
  type CacheRef,
  type RegistryCacheOptions,
  type ExportOptions as RegistryCacheExportOptions,
  type ExportResult as RegistryCacheExportResult,
  type StoredCacheEntry,
} from './cache/registry-cache.js';
export {
  SharedCaches,
  type SharedCacheOptions,
  type SharedCacheHit,
  type SharedCacheExport,
} from './cache/registry-shared.js';
export { layeredCache, type CacheSource, type CacheHit, type RemoteCache } from './cache/source.js';
export {
  runCall,
  runChecks,
  checkFailure,
  parseCallFlag,
  type CallSpec,
  type CallResult,
  type DockerfileInputs,
} from './dockerfile-checks.js';
export { buildImage, resolveBaseImage, type BuildImageOptions, type BuildImageResult } from './build.js';
export { watchBuilds, type WatchBuildOptions, type WatchBuildOutcome } from './build-watch.js';
export { parseOutputs, type OutputTarget } from './output-spec.js';
export { checkOutput, planOutput, type OutputPlan, type OutputShape } from './oci/output-path.js';
export { parseBuildContexts, type NamedContext } from './named-contexts.js';
export * from './build-flags.js';
export {
  loadIntoDockerDaemon,
  dockerSocketPath,
  type DaemonLoadOptions,
  type DaemonLoadResult,
} from './oci-writer/docker-daemon-writer.js';
export { exportFilesystemToDirectory, exportFilesystemAsTar } from './filesystem-export.js';
export { listCache, cacheDiskUsage, pruneLayerCache, type CacheLocation } from './cache-admin.js';
export {
  diffCaches,
  type CacheDiffOptions,
  type CacheDiffResult,
  type CacheDiffSide,
  type CacheDiffStep,
} from './cache-diff.js';
export { removeImages, type RemoveImagesResult } from './image-removal.js';
export type { CacheUsage, PruneResult } from './cache/prune.js';
export * from './analyze/index.js';
export { runInUserNamespace } from './user-namespace.js';
export {
  parseAttestationFlags,
  attestsAnything,
  readAttestations,
  imageSbom,
  scanImage,
  scanDirectory,
  spdxDocument,
  spdxLicence,
  imagePurl,
  isAttestationEntry,
  verifyAttestations,
  loadPublicKey,
  cosignAttestationTag,
  pae,
  BUILDER_ID,
  STRATUM_VERSION,
  IN_TOTO_MEDIA_TYPE,
  PREDICATE_TYPE_ANNOTATION,
  REFERENCE_TYPE_ANNOTATION,
  REFERENCE_DIGEST_ANNOTATION,
  SLSA_PROVENANCE_V02,
  SLSA_PROVENANCE_V1,
  SPDX_DOCUMENT,
  type AttestationFlags,
  type AttestationRequest,
  type ProvenanceRequest,
  type SbomRequest,
  type Statement,
  type SpdxDocument,
  type SpdxPackage,
  type ImageAttestations,
  type AttestationManifest,
  type StoredStatement,
  type ImageSbom,
  type ScanResult,
  type FoundPackage,
  type VerifiedAttestation,
} from './attest/index.js';
