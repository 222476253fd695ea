import type { ImageSource } from '../oci/image.js';
import { walkImage, type LayerChanges } from './apply.js';
import type { EntryField, FsState } from './fs-model.js';
import { dockerfileHints, type DockerfileInput } from './hints.js';
import { secretReason } from './secrets.js';
import type {
  AnalysisTotals,
  CopyUp,
  CopyUpCause,
  ImageAnalysis,
  LayerReport,
  RecoverableFile,
  StepRef,
  WastedContent,
} from './types.js';

/**
 * What an image's layers really cost: per layer sizes and changes, content that ships but never
 * reaches the final filesystem (wasted), deleted files still extractable from an earlier layer
 * (recoverable, loud when the name looks secret), files re-emitted whole for a small change
 * (copy-up), and an efficiency figure. Content sizes are regular-file bytes; tar headers and
 * padding are in the layer sizes only.
 */

export interface AnalyzeOptions {
  /** The Dockerfile that built the image, for hints tied to its lines. */
  readonly dockerfile?: DockerfileInput;
  readonly signal?: AbortSignal;
}

/** A content edit counts as "a few bytes" when at most this share of blocks differ (min 1). */
const SMALL_EDIT_SHARE = 0.1;

function isSmallEdit(changedBlocks: number, blocks: number): boolean {
  return blocks >= 2 && changedBlocks <= Math.max(1, Math.floor(blocks * SMALL_EDIT_SHARE));
}

function copyUpCause(fields: readonly EntryField[]): CopyUpCause {
  if (fields.includes('content') || fields.includes('size')) return 'content';
  return fields.length === 0 ? 'unchanged' : 'metadata';
}

/** The files a layer copied up from lower layers, by path, with what caused each copy. */
function copiedUpFiles(layer: LayerChanges): Map<string, CopyUpCause> {
  const causes = new Map<string, CopyUpCause>();
  for (const entry of layer.changed) {
    if (entry.before.type === 'file' && entry.after.type === 'file')
      causes.set(entry.path, copyUpCause(entry.fields));
  }
  for (const entry of layer.reemitted) if (entry.type === 'file') causes.set(entry.path, 'unchanged');
  return causes;
}

/** The layer's directories and their changed metadata, when directories are all it changed. */
function onlyDirectoriesOf(layer: LayerChanges): LayerReport['onlyDirectories'] {
  if (layer.added.length > 0 || layer.deleted.length > 0) return undefined;
  if (layer.changed.some((entry) => entry.before.type !== 'dir' || entry.after.type !== 'dir'))
    return undefined;
  if (layer.reemitted.some((entry) => entry.type !== 'dir')) return undefined;
  const directories = [
    ...layer.changed.map((entry) => ({ path: entry.path, fields: entry.fields })),
    ...layer.reemitted.map((entry) => ({
      path: entry.path,
      fields: entry.mtimeChanged ? (['mtime'] as const) : ([] as const),
    })),
  ];
  if (directories.length === 0) return undefined;
  // Directories whose metadata changed first; then the ones re-emitted as parents.
  return directories.sort((a, b) => b.fields.length - a.fields.length || compare(a.path, b.path));
}

function copyUpsOf(layer: LayerChanges, at: StepRef): CopyUp[] {
  const out: CopyUp[] = [];
  for (const entry of layer.changed) {
    if (entry.before.type !== 'file' || entry.after.type !== 'file' || entry.after.size === 0) continue;
    if (entry.linkOf !== undefined) continue; // the same bytes as another path of its hard-link group
    const contentChanged = entry.fields.includes('content') || entry.fields.includes('size');
    if (contentChanged) {
      const changed = entry.changedBlocks ?? 0;
      const blocks = entry.blocks ?? 0;
      if (!isSmallEdit(changed, blocks)) continue;
      out.push({
        path: entry.path,
        size: entry.after.size,
        at,
        cause: 'content',
        changes: entry.fields.filter((field) => field !== 'size'),
        changedBlocks: changed,
        blocks,
      });
    } else {
      out.push({
        path: entry.path,
        size: entry.after.size,
        at,
        cause: copyUpCause(entry.fields),
        changes: entry.fields,
      });
    }
  }
  return out;
}

export async function analyzeImage(image: ImageSource, options: AnalyzeOptions = {}): Promise<ImageAnalysis> {
  const steps: { index: number; createdBy: string; layer?: number }[] = [];
  const layers: LayerChanges[] = [];
  const refs: StepRef[] = [];
  const copyUps: CopyUp[] = [];
  let contentFinal = 0;
  let finalFs: FsState | undefined;
  const walk = walkImage(image, options.signal ? { signal: options.signal } : {});
  for await (const step of walk) {
    steps.push({
      index: step.index,
      createdBy: step.createdBy,
      ...(step.layer ? { layer: step.layer.index } : {}),
    });
    if (step.layer === undefined) continue;
    const ref: StepRef = { layer: step.layer.index, step: step.index, createdBy: step.createdBy };
    layers.push(step.layer);
    refs.push(ref);
    copyUps.push(...copyUpsOf(step.layer, ref));
    finalFs = step.fs;
  }
  // The final filesystem is the live model after the last step; hard-link groups count once.
  const seen = new Set<number>();
  for (const node of finalFs?.nodes.values() ?? []) {
    if (node.entry.type !== 'file' || seen.has(node.id)) continue;
    seen.add(node.id);
    contentFinal += node.entry.size;
  }

  const wasted: WastedContent[] = [];
  const recoverable: RecoverableFile[] = [];
  const wastedByLayer = new Map<number, number>();
  const copiedUp = layers.map(copiedUpFiles);
  for (const [position, layer] of layers.entries()) {
    for (const item of layer.hidden) {
      const addedBy = refs[item.addedBy]!;
      const cause = copiedUp[item.addedBy]?.get(item.path);
      const entry: WastedContent = {
        path: item.path,
        size: item.size,
        addedBy,
        ...(cause === undefined ? {} : { copiedUp: cause }),
        hiddenBy: refs[position]!,
        how: item.how,
      };
      wastedByLayer.set(item.addedBy, (wastedByLayer.get(item.addedBy) ?? 0) + item.size);
      if (item.size > 0) wasted.push(entry);
      const secret = secretReason(item.path);
      if (item.size > 0 || secret !== undefined) {
        recoverable.push({
          ...entry,
          layerDigest: layers[item.addedBy]?.descriptor.digest ?? '',
          ...(item.sha256 !== undefined ? { sha256: item.sha256 } : {}),
          ...(secret !== undefined ? { secret } : {}),
        });
      }
    }
  }
  wasted.sort((a, b) => b.size - a.size || compare(a.path, b.path));
  recoverable.sort(
    (a, b) =>
      Number(b.secret !== undefined) - Number(a.secret !== undefined) ||
      b.size - a.size ||
      compare(a.path, b.path),
  );
  copyUps.sort((a, b) => b.size - a.size || compare(a.path, b.path));

  const reports: LayerReport[] = layers.map((layer, position) => {
    const onlyDirectories = onlyDirectoriesOf(layer);
    return {
      ...refs[position]!,
      digest: layer.descriptor.digest,
      compressedSize: layer.compressedSize,
      uncompressedSize: layer.uncompressedSize,
      contentBytes: layer.contentBytes,
      added: layer.added.length,
      changed: layer.changed.length,
      deleted: layer.deleted.length,
      reemitted: layer.reemitted.filter((entry) => entry.type !== 'dir').length,
      wastedBytes: wastedByLayer.get(layer.index) ?? 0,
      ...(onlyDirectories === undefined ? {} : { onlyDirectories }),
    };
  });
  const sum = (pick: (layer: LayerReport) => number): number =>
    reports.reduce((total, layer) => total + pick(layer), 0);
  const contentShipped = sum((layer) => layer.contentBytes);
  const totals: AnalysisTotals = {
    compressedSize: sum((layer) => layer.compressedSize),
    uncompressedSize: sum((layer) => layer.uncompressedSize),
    contentShipped,
    contentFinal,
    wastedBytes: wasted.reduce((total, item) => total + item.size, 0),
    copyUpBytes: copyUps.reduce((total, item) => total + item.size, 0),
    efficiency: contentShipped === 0 ? 1 : contentFinal / contentShipped,
  };
  const hints = options.dockerfile === undefined ? [] : dockerfileHints(options.dockerfile, steps, wasted);
  return {
    name: image.name,
    digest: image.descriptor.digest,
    steps,
    layers: reports,
    totals,
    wasted,
    recoverable,
    copyUps,
    hints,
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
