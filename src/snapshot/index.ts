/** src/snapshot: rootfs scan and diff, layer tar writing, layer extraction. See README.md. */
export type {
  LayerChange,
  EntryMeta,
  EntryStat,
  FileType,
  LayerDiff,
  ScanOptions,
  TreeBaseline,
  TreeSnapshot,
} from './types.js';
export { scanTree, emptySnapshot } from './scan.js';
export { diffSnapshots, isEmptyDiff } from './diff.js';
export { createTreeBaseline } from './tree-baseline.js';
export {
  writeLayer,
  writeLayerEntries,
  writeDirectoryLayer,
  layerTarStream,
  tarStream,
  type LayerWriteOptions,
  type WrittenLayer,
} from './layer-writer.js';
export { reclampLayer } from './layer-reclamp.js';
export { layerEntries, type TarEntry, type EntryOptions } from './tar-entries.js';
export type { TarHeader, TarType } from './tar-header.js';
export { extractLayer, extractLayerAuto, type ExtractOptions, type ExtractResult } from './extract.js';
export { ParallelGzip, type ParallelGzipOptions } from '../oci/parallel-gzip.js';
