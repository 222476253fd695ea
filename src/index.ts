/**
 * stratum's library API: what package.json exports, documented in docs/api.md. It is kept small
 * on purpose (build, images, cache, diff, analyze, attestations, layers): everything else is
 * internal and may change. The CLI has its own, wider facade in src/api/cli.ts.
 */

// Errors: every failure a user can cause is a StratumError with a code and, where known, a location.
export { StratumError, isStratumError, type ErrorCode, type SourceLocation } from './errors.js';

// Build: a Dockerfile and a context to an image, written to any output.
export { buildImage, type BuildImageOptions, type BuildImageResult } from './build/build-image.js';
export type { BuildEvent, ProgressListener, StepRef } from './executor/progress.js';
export { parseDockerfile } from './parser/parse.js';
export { readDockerfileSource } from './parser/read.js';
export type { ParseResult, Instruction, Stage, Diagnostic } from './parser/types.js';

// Images: open and write by reference (oci:, oci-archive:, docker-archive:, docker-daemon:,
// docker://, the local store), copy between them, read layers and what they hold.
export {
  openImage,
  openAllPlatforms,
  writeImage,
  copyImage,
  verifyOciLayout,
  ImageStore,
  type ImageOptions,
  type OpenImageOptions,
  type WriteResult,
  type StoredImage,
} from './transport/index.js';
export {
  isImageIndex,
  type AnyImage,
  type ImageSource,
  type ImageIndexSource,
  type LayerRef,
} from './oci/image.js';
export { openLayerTar, type LayerTarOptions } from './oci/layer.js';
export { summarizeImage, type ImageSummary, type LayerSummary } from './oci/inspect.js';
export { BlobStore, type BlobInfo } from './oci/blob-store.js';
export { parseImageReference, formatImageReference } from './oci/reference.js';
export { parsePlatform, formatPlatform, hostPlatform } from './oci/platform.js';
export { parseCompression, type Compression, type CompressionSpec } from './oci/compression.js';
export type * from './oci/types.js';

// Registries: pull, push, log in (credentials as docker login keeps them).
export {
  openRegistryImage,
  pullImage,
  pushImage,
  pushIndex,
  login,
  logout,
  type PushOptions,
  type PushResult,
  type PullOptions,
  type LoginOptions,
} from './registry/index.js';

// Cache: the layer cache on disk and its housekeeping; caches imported and exported (registry, directory).
export { LayerCache, type CacheEntry, type CacheEntryInfo } from './cache/store.js';
export { listCache, cacheDiskUsage, pruneLayerCache, type CacheLocation } from './cache/admin.js';
export { removeImages, type RemoveImagesResult } from './cache/image-removal.js';
export type { CacheUsage, PruneResult } from './cache/prune.js';
export { parseCacheRef, type CacheRef } from './cache/remote/cache-ref.js';
export {
  RemoteCaches,
  openImportedCache,
  type RemoteCachesOptions,
  type CacheExportSummary,
  type OpenCacheOptions,
} from './cache/remote/remote-caches.js';
export type { ImportedCache } from './cache/remote/import.js';
export { diffCaches, type CacheDiffOptions, type CacheDiffResult } from './build/cache-diff.js';

// Diff and analyze: two images compared step by step; one image's layers, waste and copy-ups.
export { diffImages, formatImageDiff, type ImageDiff, type DiffOptions } from './analyze/index.js';
export {
  analyzeImage,
  formatAnalysis,
  writeAnalysisHtml,
  applyLayers,
  walkImage,
  diskUsage,
  formatDiskUsage,
  type AnalyzeOptions,
  type ImageAnalysis,
  type AppliedImage,
  type DiskUsage,
} from './analyze/index.js';

// Attestations: SBOM and provenance read back, verified and summarised.
export {
  readAttestations,
  verifyAttestations,
  imageSbom,
  loadPublicKey,
  type ImageAttestations,
  type VerifiedAttestation,
  type ImageSbom,
} from './attest/index.js';

// Layers, for learning how images work: a directory scanned, two scans diffed, a layer written
// from a directory and extracted again.
export {
  scanTree,
  diffSnapshots,
  writeDirectoryLayer,
  extractLayer,
  extractLayerAuto,
  type TreeSnapshot,
  type LayerDiff,
  type WrittenLayer,
  type ExtractOptions,
  type ExtractResult,
} from './snapshot/index.js';
