import type { ImageSource } from '../oci/image.js';
import type { ContainerConfig } from '../oci/types.js';
import { stepsOf, walkImage, type AppliedStep, type LayerChanges } from './apply.js';
import {
  emptyState,
  entryDifferences,
  hardLinkGroups,
  type EntryField,
  type FsEntry,
  type FsState,
} from './fs-model.js';

/**
 * Compares two images step by step: both are applied layer by layer (see apply.ts) and after
 * each history index the two filesystems are compared. A difference is reported at the step
 * where it first appears (or changes), so a base layer that differs shows once, not at every
 * later step; a difference that a later step makes go away is reported as `resolved` there.
 * Times are ignored unless asked for. The config fields a Dockerfile sets are compared too.
 */

export type DiffField = EntryField | 'links';
export type FieldValue = string | number | readonly string[] | null;

export type Side = 'a' | 'b';

export type StepDifference =
  /** The path exists only in one image after this step. */
  | { readonly kind: 'only'; readonly side: Side; readonly path: string; readonly entry: FsEntry }
  /** The path exists in both and these fields differ (`links`: its hard-link group). */
  | {
      readonly kind: 'differs';
      readonly path: string;
      readonly fields: readonly DiffField[];
      readonly a: Readonly<Partial<Record<DiffField, FieldValue>>>;
      readonly b: Readonly<Partial<Record<DiffField, FieldValue>>>;
    }
  /** This step made a layer in one image and none (an empty layer, or no step) in the other. */
  | {
      readonly kind: 'layer';
      readonly side: Side;
      readonly digest: string;
      readonly size: number;
      readonly entries: number;
    }
  /** One image's layer re-emits this entry unchanged; the other's does not carry it. */
  | { readonly kind: 'reemitted'; readonly side: Side; readonly path: string; readonly size: number }
  /** A difference reported at an earlier step is gone after this one (not a difference). */
  | { readonly kind: 'resolved'; readonly path: string };

export interface StepSide {
  readonly createdBy: string;
  readonly emptyLayer: boolean;
}

export interface StepDiff {
  /** History index. */
  readonly index: number;
  /** Undefined when this image's history is shorter. */
  readonly a?: StepSide;
  readonly b?: StepSide;
  readonly differences: readonly StepDifference[];
}

export type ConfigField =
  | 'Env'
  | 'Cmd'
  | 'Entrypoint'
  | 'WorkingDir'
  | 'User'
  | 'ExposedPorts'
  | 'Volumes'
  | 'Labels'
  | 'StopSignal'
  | 'Healthcheck'
  | 'OnBuild'
  | 'Shell';

export const CONFIG_FIELDS: readonly ConfigField[] = [
  'Env',
  'Cmd',
  'Entrypoint',
  'WorkingDir',
  'User',
  'ExposedPorts',
  'Volumes',
  'Labels',
  'StopSignal',
  'Healthcheck',
  'OnBuild',
  'Shell',
];

export interface ConfigDifference {
  readonly field: ConfigField;
  /** The value in each config; undefined when unset (null, "", [] and {} count as unset). */
  readonly a?: unknown;
  readonly b?: unknown;
}

export interface ImageDiff {
  readonly a: { readonly name: string; readonly digest: string; readonly historyLength: number };
  readonly b: { readonly name: string; readonly digest: string; readonly historyLength: number };
  readonly times: boolean;
  /** Set when the histories have different lengths (steps are still aligned by index). */
  readonly historyMismatch?: string;
  readonly steps: readonly StepDiff[];
  /** Every difference between the final filesystems (kinds `only` and `differs`). */
  readonly final: readonly StepDifference[];
  readonly config: readonly ConfigDifference[];
  /** Layer-exact: no difference of any kind, re-emitted entries and layers on one side included. */
  readonly equivalent: boolean;
  /**
   * The filesystem after every step and the config are the same; the layers may still differ in
   * entries one side re-emitted unchanged, or in a layer only one side made that changed
   * nothing (a lock file opened for writing, an empty WORKDIR layer). `stratum diff` exits 0 on
   * this unless --strict.
   */
  readonly filesystemsEquivalent: boolean;
}

export interface DiffOptions {
  /** Compare mtimes too. */
  readonly times?: boolean;
  readonly signal?: AbortSignal;
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

function fieldValue(entry: FsEntry, field: DiffField, links: readonly string[] | undefined): FieldValue {
  switch (field) {
    case 'type':
      return entry.type;
    case 'mode':
      return octal(entry.mode);
    case 'uid':
      return entry.uid;
    case 'gid':
      return entry.gid;
    case 'size':
      return entry.size;
    case 'content':
      return entry.sha256 ?? null;
    case 'linkTarget':
      return entry.linkTarget ?? null;
    case 'device':
      return entry.devMajor === undefined ? null : `${entry.devMajor},${entry.devMinor ?? 0}`;
    case 'mtime':
      return entry.mtime;
    case 'links':
      return links ?? [];
  }
}

type PathDifference = Extract<StepDifference, { kind: 'only' | 'differs' }>;

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const left = a ?? [];
  const right = b ?? [];
  return left.length === right.length && left.every((value, index) => value === right[index]);
}

/** Every path that differs between two filesystems, sorted by path. */
export function compareFilesystems(a: FsState, b: FsState, times: boolean): PathDifference[] {
  const linksA = hardLinkGroups(a);
  const linksB = hardLinkGroups(b);
  const out: PathDifference[] = [];
  for (const [path, nodeA] of a.nodes) {
    const nodeB = b.nodes.get(path);
    if (nodeB === undefined) {
      out.push({ kind: 'only', side: 'a', path, entry: nodeA.entry });
      continue;
    }
    const fields: DiffField[] = entryDifferences(nodeA.entry, nodeB.entry, times);
    // Directory mtimes change with every child; with --times they are compared like the rest.
    if (!sameList(linksA.get(path), linksB.get(path))) fields.push('links');
    if (fields.length === 0) continue;
    const valuesA: Partial<Record<DiffField, FieldValue>> = {};
    const valuesB: Partial<Record<DiffField, FieldValue>> = {};
    for (const field of fields) {
      valuesA[field] = fieldValue(nodeA.entry, field, linksA.get(path));
      valuesB[field] = fieldValue(nodeB.entry, field, linksB.get(path));
    }
    out.push({ kind: 'differs', path, fields, a: valuesA, b: valuesB });
  }
  for (const [path, nodeB] of b.nodes) {
    if (!a.nodes.has(path)) out.push({ kind: 'only', side: 'b', path, entry: nodeB.entry });
  }
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

/** Entries a layer re-emits without changing anything that is compared. */
function reemittedPaths(layer: LayerChanges | undefined, times: boolean): Set<string> {
  const out = new Set<string>();
  if (layer === undefined) return out;
  for (const entry of layer.reemitted) {
    // Parent directories are re-emitted by every builder around any change below them.
    if (entry.type === 'dir') continue;
    if (times && entry.mtimeChanged) continue;
    out.add(entry.path);
  }
  return out;
}

function touchedPaths(layer: LayerChanges | undefined): Set<string> {
  const out = new Set<string>();
  if (layer === undefined) return out;
  for (const path of layer.added) out.add(path);
  for (const path of layer.deleted) out.add(path);
  for (const entry of layer.changed) out.add(entry.path);
  for (const entry of layer.reemitted) out.add(entry.path);
  return out;
}

function isUnset(value: unknown): boolean {
  if (value === undefined || value === null || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === 'object') return Object.keys(value).length === 0;
  return false;
}

/** JSON with object keys sorted, so maps (Labels, ExposedPorts) compare by content. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    const record = value as Record<string, unknown>;
    return `{${keys.map((key) => `${JSON.stringify(key)}:${stableJson(record[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function compareConfigs(
  a: ContainerConfig | undefined,
  b: ContainerConfig | undefined,
): ConfigDifference[] {
  const out: ConfigDifference[] = [];
  for (const field of CONFIG_FIELDS) {
    const valueA: unknown = a?.[field];
    const valueB: unknown = b?.[field];
    const unsetA = isUnset(valueA);
    const unsetB = isUnset(valueB);
    if (unsetA && unsetB) continue;
    if (!unsetA && !unsetB && stableJson(valueA) === stableJson(valueB)) continue;
    out.push({ field, ...(unsetA ? {} : { a: valueA }), ...(unsetB ? {} : { b: valueB }) });
  }
  return out;
}

function differenceKey(difference: PathDifference): string {
  return JSON.stringify(difference);
}

export async function diffImages(
  a: ImageSource,
  b: ImageSource,
  options: DiffOptions = {},
): Promise<ImageDiff> {
  const times = options.times === true;
  // Bad history (none, or disagreeing with the layers) is an error before any work.
  stepsOf(a);
  stepsOf(b);
  const walkOptions = options.signal ? { signal: options.signal } : {};
  const walkA = walkImage(a, walkOptions);
  const walkB = walkImage(b, walkOptions);
  const lengthA = a.config.value.history?.length ?? 0;
  const lengthB = b.config.value.history?.length ?? 0;
  let stateA: FsState = emptyState();
  let stateB: FsState = emptyState();
  let previous = new Map<string, string>();
  let last: PathDifference[] = [];
  const steps: StepDiff[] = [];
  let counted = 0;
  // Of those, differences in the layers only: entries re-emitted unchanged, layers with no effect.
  let inLayersOnly = 0;
  const next = async (walk: AsyncGenerator<AppliedStep, FsState>): Promise<AppliedStep | undefined> => {
    const result = await walk.next();
    return result.done === true ? undefined : result.value;
  };
  try {
    for (let index = 0; index < Math.max(lengthA, lengthB); index++) {
      options.signal?.throwIfAborted();
      // Both sides advance together: decompression of one overlaps hashing of the other.
      const [stepA, stepB] = await Promise.all([
        index < lengthA ? next(walkA) : undefined,
        index < lengthB ? next(walkB) : undefined,
      ]);
      if (stepA) stateA = stepA.fs;
      if (stepB) stateB = stepB.fs;
      const differences: StepDifference[] = [];

      const layerA = stepA?.layer;
      const layerB = stepB?.layer;
      if (layerA && !layerB) differences.push(layerOnly('a', layerA));
      if (layerB && !layerA) differences.push(layerOnly('b', layerB));

      const current = compareFilesystems(stateA, stateB, times);
      const keys = new Map<string, string>();
      for (const difference of current) {
        const key = differenceKey(difference);
        keys.set(difference.path, key);
        if (previous.get(difference.path) !== key) differences.push(difference);
      }
      for (const path of previous.keys()) {
        if (!keys.has(path)) differences.push({ kind: 'resolved', path });
      }

      // An entry one layer re-emits unchanged that the other layer does not carry at all.
      const reA = reemittedPaths(layerA, times);
      const reB = reemittedPaths(layerB, times);
      const touchedA = touchedPaths(layerA);
      const touchedB = touchedPaths(layerB);
      for (const path of reA) {
        if (!touchedB.has(path) && !keys.has(path))
          differences.push({
            kind: 'reemitted',
            side: 'a',
            path,
            size: stateA.nodes.get(path)?.entry.size ?? 0,
          });
      }
      for (const path of reB) {
        if (!touchedA.has(path) && !keys.has(path))
          differences.push({
            kind: 'reemitted',
            side: 'b',
            path,
            size: stateB.nodes.get(path)?.entry.size ?? 0,
          });
      }

      counted += differences.filter((difference) => difference.kind !== 'resolved').length;
      inLayersOnly += differences.filter(
        (difference) => difference.kind === 'reemitted' || difference.kind === 'layer',
      ).length;
      previous = keys;
      last = current;
      steps.push({
        index,
        ...(stepA ? { a: { createdBy: stepA.createdBy, emptyLayer: stepA.emptyLayer } } : {}),
        ...(stepB ? { b: { createdBy: stepB.createdBy, emptyLayer: stepB.emptyLayer } } : {}),
        differences,
      });
    }
  } finally {
    await walkA.return(emptyState());
    await walkB.return(emptyState());
  }
  const config = compareConfigs(a.config.value.config, b.config.value.config);
  const historyMismatch =
    lengthA === lengthB
      ? undefined
      : `the histories differ in length (${lengthA} steps in A, ${lengthB} in B); steps are aligned by index`;
  return {
    a: { name: a.name, digest: a.descriptor.digest, historyLength: lengthA },
    b: { name: b.name, digest: b.descriptor.digest, historyLength: lengthB },
    times,
    ...(historyMismatch !== undefined ? { historyMismatch } : {}),
    steps,
    final: last,
    config,
    equivalent: counted === 0 && config.length === 0 && historyMismatch === undefined,
    filesystemsEquivalent: counted === inLayersOnly && config.length === 0 && historyMismatch === undefined,
  };
}

function layerOnly(side: Side, layer: LayerChanges): StepDifference {
  return {
    kind: 'layer',
    side,
    digest: layer.descriptor.digest,
    size: layer.compressedSize,
    entries: layer.tarEntries,
  };
}
