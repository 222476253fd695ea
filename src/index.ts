/** stratum's public API: what the CLI and examples/ use. */
export { StratumError, isStratumError, type ErrorCode } from './errors.js';
export * from './oci/types.js';
export { BlobStore, type BlobInfo } from './oci/blob-store.js';
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
