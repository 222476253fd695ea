import { humanSize } from '../util/byte-size.js';
import { displayName } from '../util/file-names.js';

export { humanSize };
import type { CopyUp, CopyUpCause, ImageAnalysis, LayerReport, StepRef, WastedContent } from './types.js';
import type { ImageDiff, StepDiff, StepDifference } from './diff.js';
import type { DiskUsage } from './du.js';
import type { FsEntry } from './fs-model.js';

/** Plain-text renderings of diffs, analyses and disk usage, as the CLI prints them. */

export function oneLine(text: string, width = 100): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > width ? `${flat.slice(0, width - 3)}...` : flat;
}

function shortDigest(value: string): string {
  return value.startsWith('sha256:') ? value.slice(0, 19) : value;
}

function describeEntry(entry: FsEntry): string {
  switch (entry.type) {
    case 'file':
      return `file ${humanSize(entry.size)}`;
    case 'symlink':
      return `symlink → ${entry.linkTarget ?? ''}`;
    case 'char':
    case 'block':
      return `${entry.type} device ${entry.devMajor ?? 0},${entry.devMinor ?? 0}`;
    case 'dir':
    case 'fifo':
      return entry.type;
  }
}

function show(value: unknown): string {
  if (typeof value === 'string') return shortDigest(value);
  return JSON.stringify(value);
}

function formatDifference(difference: StepDifference): string {
  switch (difference.kind) {
    case 'only':
      return `  ${difference.side === 'a' ? '-' : '+'} ${difference.path}  (only in ${difference.side.toUpperCase()}: ${describeEntry(difference.entry)})`;
    case 'differs': {
      const parts = difference.fields.map(
        (field) => `${field} ${show(difference.a[field])} → ${show(difference.b[field])}`,
      );
      return `  ~ ${difference.path}  ${parts.join('; ')}`;
    }
    case 'layer':
      return `  ! layer only in ${difference.side.toUpperCase()}: ${shortDigest(difference.digest)} (${difference.entries} entries, ${humanSize(difference.size)}); the other side made no layer here`;
    case 'reemitted':
      return `  = ${difference.path}  re-emitted unchanged in ${difference.side.toUpperCase()}'s layer only (${humanSize(difference.size)})`;
    case 'resolved':
      return `  ✓ ${difference.path}  no longer differs`;
  }
}

function stepHeader(step: StepDiff): string[] {
  const a = step.a === undefined ? '(no step)' : oneLine(step.a.createdBy || '(no created_by)');
  const b = step.b === undefined ? '(no step)' : oneLine(step.b.createdBy || '(no created_by)');
  if (step.a !== undefined && step.b !== undefined && step.a.createdBy === step.b.createdBy)
    return [`step ${step.index}: ${a}`];
  return [`step ${step.index}:`, `  A: ${a}`, `  B: ${b}`];
}

/** Steps without differences are listed on one line; the rest with their differences. */
export function formatImageDiff(diff: ImageDiff, limit = 200): string {
  const lines = [
    `A: ${diff.a.name} (${diff.a.digest})`,
    `B: ${diff.b.name} (${diff.b.digest})`,
    `times: ${diff.times ? 'compared' : 'ignored (use --times to compare them)'}`,
  ];
  if (diff.historyMismatch !== undefined) lines.push(`note: ${diff.historyMismatch}`);
  lines.push('');
  for (const step of diff.steps) {
    const header = stepHeader(step);
    if (step.differences.length === 0) {
      lines.push(`${header.join('\n')}${header.length === 1 ? '  (same)' : '\n  (same)'}`);
      continue;
    }
    lines.push(...header);
    for (const difference of step.differences.slice(0, limit)) lines.push(formatDifference(difference));
    if (step.differences.length > limit)
      lines.push(`  ... and ${step.differences.length - limit} more (see --json)`);
  }
  if (diff.historyMismatch !== undefined) {
    lines.push(
      '',
      `final filesystems: ${diff.final.length === 0 ? 'identical' : `${diff.final.length} difference(s)`}`,
    );
    for (const difference of diff.final.slice(0, limit)) lines.push(formatDifference(difference));
  }
  lines.push('');
  if (diff.config.length === 0) lines.push('config: same');
  else {
    lines.push('config:');
    for (const item of diff.config)
      lines.push(`  ~ ${item.field}: A ${configValue(item.a)}  B ${configValue(item.b)}`);
  }
  const counted = diff.steps.reduce(
    (total, step) => total + step.differences.filter((difference) => difference.kind !== 'resolved').length,
    0,
  );
  lines.push(
    diff.equivalent
      ? 'result: equivalent'
      : diff.filesystemsEquivalent
        ? `result: equivalent filesystems and config; the layers differ in ${counted} entr${counted === 1 ? 'y' : 'ies'} re-emitted unchanged or layer(s) that changed nothing (different with --strict)`
        : `result: different (${counted} filesystem difference(s), ${diff.config.length} config difference(s))`,
  );
  // Names that are not UTF-8 shown as \xNN (they would print as U+FFFD).
  return displayName(lines.join('\n') + '\n');
}

function configValue(value: unknown): string {
  return value === undefined ? '(unset)' : JSON.stringify(value);
}

function where(ref: StepRef): string {
  return `layer ${ref.layer + 1} (${oneLine(ref.createdBy, 60)})`;
}

function percent(ratio: number): string {
  const shown = (ratio * 100).toFixed(1);
  // A few wasted bytes must not read as a perfect score.
  return ratio < 1 && shown === '100.0' ? '>99.9%' : `${shown}%`;
}

/** What caused a copy-up, and what it cost: the whole file, whatever the change. */
function copyUpReason(item: CopyUp): string {
  return `${copyUpCauseText(item.cause, item.changes, item)}: whole file copied up`;
}

/** What changed in a copied-up file, in the words of the text report and the HTML page alike. */
export function copyUpCauseText(
  cause: CopyUpCause,
  changes: readonly string[] = [],
  blocks: { readonly changedBlocks?: number; readonly blocks?: number } = {},
): string {
  switch (cause) {
    case 'content':
      return blocks.blocks === undefined
        ? 'changed (content)'
        : `changed (content: ${blocks.changedBlocks ?? 0} of ${blocks.blocks} 16 KiB blocks)`;
    case 'metadata':
      return changes.length === 0 ? 'changed (metadata)' : `changed (metadata: ${changes.join(', ')})`;
    case 'unchanged':
      return 're-emitted unchanged';
  }
}

/** The table's counts, or what the layer did when directories' metadata is all it changed. */
function directoryOnlyNote(layer: LayerReport): string | undefined {
  if (layer.onlyDirectories === undefined) return undefined;
  const shown = layer.onlyDirectories.slice(0, 3).map(({ path, fields }) => {
    const name = path === '' ? '/' : path;
    return fields.length === 0 ? `${name} (re-emitted unchanged)` : `${name} (${fields.join(', ')})`;
  });
  const more = layer.onlyDirectories.length - shown.length;
  return `       no file added, changed or deleted: only directory metadata: ${shown.join(', ')}${more > 0 ? `, and ${more} more` : ''}`;
}

/** "added by layer 2 (...)", or for a copy-up "copied up by layer 3 (...): changed (metadata)". */
function carriedBy(item: WastedContent, verb = 'added by'): string {
  if (item.copiedUp === undefined) return `${verb} ${where(item.addedBy)}`;
  return `copied up by ${where(item.addedBy)}: ${copyUpCauseText(item.copiedUp)}`;
}

export function formatAnalysis(analysis: ImageAnalysis, limit = 20): string {
  const { totals } = analysis;
  const lines = [
    `Image: ${analysis.name} (${analysis.digest})`,
    `Layers: ${analysis.layers.length}, ${humanSize(totals.compressedSize)} compressed, ${humanSize(totals.uncompressedSize)} uncompressed`,
    '',
    '  #  compressed  uncompressed   added  changed  deleted   wasted  instruction',
  ];
  for (const layer of analysis.layers) {
    lines.push(
      `${String(layer.layer + 1).padStart(3)}  ${humanSize(layer.compressedSize).padStart(10)}  ${humanSize(layer.uncompressedSize).padStart(12)}  ${String(layer.added).padStart(6)}  ${String(layer.changed).padStart(7)}  ${String(layer.deleted).padStart(7)}  ${humanSize(layer.wastedBytes).padStart(7)}  ${oneLine(layer.createdBy, 70)}`,
    );
    const note = directoryOnlyNote(layer);
    if (note !== undefined) lines.push(note);
  }
  lines.push(
    '',
    `Efficiency: ${percent(totals.efficiency)} (${humanSize(totals.contentFinal)} of file content reaches the final filesystem; ${humanSize(totals.contentShipped)} ships, uncompressed)`,
    `Wasted: ${humanSize(totals.wastedBytes)} in ${analysis.wasted.length} file(s) deleted or shadowed by a later layer but still shipped`,
  );
  for (const item of analysis.wasted.slice(0, limit)) {
    lines.push(
      `  ${humanSize(item.size).padStart(8)}  ${item.path}  ${carriedBy(item)}, ${item.how} by ${where(item.hiddenBy)}`,
    );
  }
  if (analysis.wasted.length > limit)
    lines.push(`  ... and ${analysis.wasted.length - limit} more (see --json)`);

  const secrets = analysis.recoverable.filter((item) => item.secret !== undefined);
  lines.push(
    '',
    `Recoverable: ${analysis.recoverable.length} file(s) removed by a later layer are still extractable from an earlier one`,
  );
  if (secrets.length > 0) {
    lines.push(
      `  !!! ${secrets.length === 1 ? '1 of these looks like a secret' : `${secrets.length} of these look like secrets`}: anyone with the image can extract ${secrets.length === 1 ? 'it' : 'them'}. Rotate, and rebuild without (RUN --mount=type=secret).`,
    );
  }
  for (const item of analysis.recoverable.slice(0, limit)) {
    const flag = item.secret === undefined ? '   ' : '!!!';
    lines.push(
      `  ${flag} ${item.path}  ${humanSize(item.size)}${item.secret === undefined ? '' : `  SECRET? ${item.secret}`}  ${carriedBy(item, 'in')}, ${item.how} by layer ${item.hiddenBy.layer + 1}`,
    );
    if (item.secret !== undefined) lines.push(`        still in layer blob ${item.layerDigest}`);
  }
  if (analysis.recoverable.length > limit)
    lines.push(`  ... and ${analysis.recoverable.length - limit} more (see --json)`);

  lines.push(
    '',
    `Copy-up: ${humanSize(totals.copyUpBytes)} in ${analysis.copyUps.length} file(s) re-shipped whole for a small change`,
  );
  for (const item of analysis.copyUps.slice(0, limit)) {
    lines.push(
      `  ${humanSize(item.size).padStart(8)}  ${item.path}  in ${where(item.at)}: ${copyUpReason(item)}`,
    );
  }
  if (analysis.copyUps.length > limit)
    lines.push(`  ... and ${analysis.copyUps.length - limit} more (see --json)`);

  if (analysis.hints.length > 0) {
    lines.push('', 'Hints:');
    for (const hint of analysis.hints) lines.push(`  ${hint.file}:${hint.line}: ${hint.message}`);
  }
  // Names that are not UTF-8 shown as \xNN (they would print as U+FFFD).
  return displayName(lines.join('\n') + '\n');
}

export function formatDiskUsage(usage: DiskUsage): string {
  const lines = [usage.location, '', '      size    unique    shared  layers  image'];
  for (const image of usage.images) {
    lines.push(
      `${humanSize(image.size).padStart(10)}  ${humanSize(image.unique).padStart(8)}  ${humanSize(image.shared).padStart(8)}  ${String(image.layers).padStart(6)}  ${image.name}`,
    );
  }
  lines.push(
    '',
    `Sum of image sizes:        ${humanSize(usage.summedSize)} (${usage.images.length} image(s), as sizes are usually added up)`,
    `Blobs they use, once each: ${humanSize(usage.referencedSize)} (${usage.referencedBlobs} blobs; shared layers are stored once)`,
    `All blobs on disk:         ${humanSize(usage.onDiskSize)} (${usage.onDiskBlobs} blobs, including ones no image names, such as the layer cache)`,
  );
  return lines.join('\n') + '\n';
}
