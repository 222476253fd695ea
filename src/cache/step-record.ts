import type { Digest } from '../oci/types.js';
import { isDigest } from '../oci/digest.js';
import type { KeyComponent } from './key.js';

/**
 * What a step's key was made of, kept with the entry it made so that `--explain` on another
 * machine (and `stratum cache diff`) can say why a step missed what an imported cache holds.
 *
 * What travels, and what not (docs/cache.md, "What an exported entry tells"):
 * - the key components as `--explain` prints them: digests, the instruction after expansion,
 *   ENV and build-arg values, user, workdir, network, mount ids. None of them is a path of the
 *   building machine: context files are named relative to the context, the Dockerfile relative
 *   to the context (or by its base name), a secret by its id only (never its value).
 * - build-arg values do travel: the image's own history (`RUN |1 VERSION=1.0 ...`, BuildKit's
 *   form) and the entry's `createdBy` already hold them, and the key is a hash over them. A
 *   secret belongs in `--secret`, never in a build arg.
 * - the context files a step read, with their content digests, up to MAX_RECORDED_FILES per
 *   step; a step that read more is recorded without its file list (a miss then names the
 *   changed `sources` digest instead of a file).
 */

/** One selected source file, as executor/context's SourceFileDigest records it. */
export interface RecordedFile {
  readonly type: string;
  readonly destRelPath: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly contentDigest?: Digest;
  readonly linkTarget?: string;
}

export type RecordedFiles = Readonly<Record<string, RecordedFile>>;

/** The base a stage started from: its reference as the Dockerfile wrote it, and its digest. */
export interface RecordedBase {
  readonly reference: string;
  readonly digest: string;
}

/** The inputs of one build of one step (what the local `explain/<id>.json` keeps per step). */
export interface StepInputs {
  readonly key: Digest;
  readonly components: readonly KeyComponent[];
  readonly files?: RecordedFiles;
  readonly mountFiles?: Readonly<Record<string, RecordedFiles>>;
  readonly base?: RecordedBase;
}

/** Which step of which Dockerfile an entry was made by. */
export interface StepPlace {
  /** The Dockerfile relative to the context (`Dockerfile`, `build/app.Dockerfile`), else its base name. */
  readonly dockerfile: string;
  /** `--target`, or '' for the last stage. */
  readonly target: string;
  /** `<stage label>/<1-based index>`, as the local explain record names steps. */
  readonly step: string;
}

export interface StepRecord extends StepInputs, StepPlace {}

/** A step that read more files than this travels without its file list (the config stays small). */
export const MAX_RECORDED_FILES = 1000;

/** The record as it goes into an exported config: file lists capped, nothing else added. */
export function exportedStepRecord(record: StepRecord): StepRecord {
  const capped = (files: RecordedFiles | undefined): RecordedFiles | undefined =>
    files === undefined || Object.keys(files).length > MAX_RECORDED_FILES ? undefined : files;
  const files = capped(record.files);
  const mountFiles =
    record.mountFiles === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(record.mountFiles).flatMap(([name, shown]) => {
            const kept = capped(shown);
            return kept === undefined ? [] : [[name, kept] as const];
          }),
        );
  return {
    dockerfile: record.dockerfile,
    target: record.target,
    step: record.step,
    key: record.key,
    components: record.components.map(({ name, value }) => ({ name, value })),
    ...(files === undefined ? {} : { files }),
    ...(mountFiles === undefined || Object.keys(mountFiles).length === 0 ? {} : { mountFiles }),
    ...(record.base === undefined
      ? {}
      : { base: { reference: record.base.reference, digest: record.base.digest } }),
  };
}

/** Reads a record from a config another machine wrote; anything malformed is undefined. */
export function decodeStepRecord(value: unknown): StepRecord | undefined {
  if (!isRecord(value)) return undefined;
  const { dockerfile, target, step, key, components, files, mountFiles, base } = value;
  if (typeof dockerfile !== 'string' || typeof target !== 'string' || typeof step !== 'string')
    return undefined;
  if (typeof key !== 'string' || !isDigest(key) || !Array.isArray(components)) return undefined;
  const decodedComponents: KeyComponent[] = [];
  for (const component of components as unknown[]) {
    if (!isRecord(component)) return undefined;
    const { name, value: text } = component;
    if (typeof name !== 'string' || typeof text !== 'string') return undefined;
    decodedComponents.push({ name, value: text });
  }
  const decodedFiles = files === undefined ? undefined : decodeFiles(files);
  if (files !== undefined && decodedFiles === undefined) return undefined;
  let decodedMountFiles: Record<string, RecordedFiles> | undefined;
  if (mountFiles !== undefined) {
    if (!isRecord(mountFiles)) return undefined;
    decodedMountFiles = {};
    for (const [name, shown] of Object.entries(mountFiles)) {
      const decoded = decodeFiles(shown);
      if (decoded === undefined) return undefined;
      decodedMountFiles[name] = decoded;
    }
  }
  let decodedBase: RecordedBase | undefined;
  if (base !== undefined) {
    if (!isRecord(base) || typeof base['reference'] !== 'string' || typeof base['digest'] !== 'string')
      return undefined;
    decodedBase = { reference: base['reference'], digest: base['digest'] };
  }
  return {
    dockerfile,
    target,
    step,
    key,
    components: decodedComponents,
    ...(decodedFiles === undefined ? {} : { files: decodedFiles }),
    ...(decodedMountFiles === undefined ? {} : { mountFiles: decodedMountFiles }),
    ...(decodedBase === undefined ? {} : { base: decodedBase }),
  };
}

function decodeFiles(value: unknown): RecordedFiles | undefined {
  if (!isRecord(value)) return undefined;
  const out: Record<string, RecordedFile> = {};
  for (const [name, file] of Object.entries(value)) {
    if (!isRecord(file)) return undefined;
    const { type, destRelPath, mode, uid, gid, size, contentDigest, linkTarget } = file;
    if (typeof type !== 'string' || typeof destRelPath !== 'string') return undefined;
    if (![mode, uid, gid, size].every((n) => typeof n === 'number' && Number.isSafeInteger(n)))
      return undefined;
    if (contentDigest !== undefined && (typeof contentDigest !== 'string' || !isDigest(contentDigest)))
      return undefined;
    if (linkTarget !== undefined && typeof linkTarget !== 'string') return undefined;
    out[name] = {
      type,
      destRelPath,
      mode: mode as number,
      uid: uid as number,
      gid: gid as number,
      size: size as number,
      ...(contentDigest === undefined ? {} : { contentDigest }),
      ...(linkTarget === undefined ? {} : { linkTarget }),
    };
  }
  return out;
}

/** The parent key a step chains from (executor/explain.ts PARENT_KEY). */
export const PARENT_COMPONENT = 'previous step';

/**
 * The record among `candidates` closest to a step, of the same Dockerfile (by its name in the
 * context; another Dockerfile sharing the cache is never the comparison): the same parent first
 * (the step's siblings: every step above it hit, so this is the entry it "should" have hit),
 * then the same step (stage and position), then the same target, then the most key components
 * in common, then the most recently used.
 */
export function closestRecord<T extends { readonly record: StepRecord; readonly used: string }>(
  candidates: Iterable<T>,
  query: StepInputs & StepPlace,
): T | undefined {
  const parent = query.components.find((component) => component.name === PARENT_COMPONENT)?.value;
  const values = new Map(query.components.map((component) => [component.name, component.value]));
  let best: T | undefined;
  let bestScore = -1;
  for (const candidate of candidates) {
    const record = candidate.record;
    if (record.dockerfile !== query.dockerfile) continue;
    const sameParent =
      parent !== undefined &&
      record.components.some(
        (component) => component.name === PARENT_COMPONENT && component.value === parent,
      );
    const sameStep = record.step === query.step;
    if (!sameParent && !sameStep) continue;
    let common = 0;
    for (const component of record.components) if (values.get(component.name) === component.value) common++;
    const score =
      (sameParent ? 1_000_000 : 0) +
      (sameStep ? 100_000 : 0) +
      (record.target === query.target ? 10_000 : 0) +
      common;
    if (score > bestScore || (score === bestScore && best !== undefined && candidate.used > best.used)) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
