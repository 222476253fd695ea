/** src/analyze: an image's filesystem step by step, image diffs, layer cost analysis. See README.md. */
export {
  applyLayers,
  walkImage,
  stepsOf,
  type AppliedImage,
  type AppliedStep,
  type ApplyOptions,
  type ChangedEntry,
  type HiddenContent,
  type HistoryStep,
  type LayerChanges,
} from './apply.js';
export {
  BLOCK_SIZE,
  emptyState,
  entryDifferences,
  hardLinkGroups,
  normalizePath,
  snapshotState,
  type EntryField,
  type EntryType,
  type FsEntry,
  type FsNode,
  type FsSnapshot,
  type FsState,
} from './fs-model.js';
export {
  diffImages,
  compareFilesystems,
  compareConfigs,
  CONFIG_FIELDS,
  type ConfigDifference,
  type ConfigField,
  type DiffField,
  type DiffOptions,
  type FieldValue,
  type ImageDiff,
  type Side,
  type StepDiff,
  type StepDifference,
  type StepSide,
} from './diff.js';
export { analyzeImage, type AnalyzeOptions } from './analyze.js';
export type {
  AnalysisTotals,
  CopyUp,
  Hint,
  ImageAnalysis,
  LayerReport,
  RecoverableFile,
  StepRef as AnalysisStepRef,
  WastedContent,
} from './types.js';
export { dockerfileHints, historyKeyword, type DockerfileInput, type HintInstruction } from './hints.js';
export { secretReason } from './secrets.js';
export { diskUsage, type DiskUsage, type ImageUsage } from './du.js';
export { formatImageDiff, formatAnalysis, formatDiskUsage, humanSize, oneLine } from './format.js';
export { renderAnalysisHtml, writeAnalysisHtml } from './html.js';
