import type { EntryField } from './fs-model.js';

/**
 * The data an analysis produces (the report of analyze.ts, the hints of hints.ts), apart from
 * the code that computes it, so formatters and hints read it without importing the analysis.
 */

export interface Hint {
  readonly kind: 'cleanup-in-same-run' | 'order-for-cache';
  readonly file: string;
  readonly line: number;
  /** The other line the hint is about (the deleting RUN, or the install step). */
  readonly relatedLine: number;
  readonly message: string;
  /** Bytes that would stop shipping (cleanup hints). */
  readonly bytes?: number;
}

/** Where something happened: the layer (manifest index) and the history step that made it. */
export interface StepRef {
  readonly layer: number;
  readonly step: number;
  readonly createdBy: string;
}

export interface LayerReport extends StepRef {
  readonly digest: string;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly contentBytes: number;
  readonly added: number;
  readonly changed: number;
  readonly deleted: number;
  /** Non-directory entries re-emitted with nothing but (maybe) their mtime changed. */
  readonly reemitted: number;
  /** Content bytes of this layer that no path of the final filesystem reaches. */
  readonly wastedBytes: number;
  /**
   * Set when the layer added, deleted and changed no file, link or device: the directories it
   * carries, each with the metadata that changed (none when re-emitted as it was). Such a layer
   * would otherwise read as "0 added, 0 changed, 0 deleted".
   */
  readonly onlyDirectories?: readonly { readonly path: string; readonly fields: readonly EntryField[] }[];
}

/**
 * Why a layer carries a whole file that a lower layer already had (a copy-up): its content
 * changed, only its metadata did (mode, owner, mtime: a chmod, chown or touch), or nothing did.
 */
export type CopyUpCause = 'content' | 'metadata' | 'unchanged';

export interface WastedContent {
  readonly path: string;
  readonly size: number;
  readonly addedBy: StepRef;
  /** Set when `addedBy` did not create the file but copied it up from a lower layer. */
  readonly copiedUp?: CopyUpCause;
  readonly hiddenBy: StepRef;
  /** Deleted (whiteout) or replaced by a new version of the path. */
  readonly how: 'deleted' | 'replaced';
}

export interface RecoverableFile extends WastedContent {
  /** The layer blob that still holds the bytes (extract with tar from it). */
  readonly layerDigest: string;
  readonly sha256?: string;
  /** Why the name looks like a secret; undefined when it does not. */
  readonly secret?: string;
}

export interface CopyUp {
  readonly path: string;
  /** Bytes re-shipped: the whole file. */
  readonly size: number;
  readonly at: StepRef;
  readonly cause: CopyUpCause;
  /** What changed: mode, uid, gid, mtime, content (a few blocks), or nothing at all. */
  readonly changes: readonly EntryField[];
  /** For content edits: differing 16 KiB blocks out of the file's blocks. */
  readonly changedBlocks?: number;
  readonly blocks?: number;
}

export interface AnalysisTotals {
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** Regular-file bytes in all layers (each hard-linked file once per layer). */
  readonly contentShipped: number;
  /** Regular-file bytes in the final filesystem (each hard-link group once). */
  readonly contentFinal: number;
  readonly wastedBytes: number;
  readonly copyUpBytes: number;
  /** contentFinal / contentShipped (1 for an image without content). */
  readonly efficiency: number;
}

export interface ImageAnalysis {
  readonly name: string;
  readonly digest: string;
  readonly steps: readonly { readonly index: number; readonly createdBy: string; readonly layer?: number }[];
  readonly layers: readonly LayerReport[];
  readonly totals: AnalysisTotals;
  /** Largest first. */
  readonly wasted: readonly WastedContent[];
  /** Secret-looking names first, then largest first. */
  readonly recoverable: readonly RecoverableFile[];
  /** Largest first. */
  readonly copyUps: readonly CopyUp[];
  readonly hints: readonly Hint[];
}
