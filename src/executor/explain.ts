import type { RecordedBase } from '../cache/step-record.js';
import { explainSourceChanges, type SourceFileDigest } from './context/index.js';
import type { ExplainStep } from './build-session.js';

/** Key component names: the key of the step before, and the ChainID of the layers so far. */
export const PARENT_KEY = 'previous step';
export const LAYERS_BELOW = 'layers below (ChainID)';

/**
 * Why a step missed the cache, in plain words, by comparing its key components with those of
 * the last build of the same step of the same Dockerfile, or (`imported` names the cache) with
 * the closest entry an imported cache holds for it, where a changed file's content digests are
 * named too (the other machine's file cannot be looked at).
 */
export function explainMiss(
  previous: ExplainStep | undefined,
  current: ExplainStep,
  previousMissInStage: string | undefined,
  cacheUsed: boolean,
  imported?: string,
): string[] {
  if (!cacheUsed) return ['cache disabled for this stage (--no-cache)'];
  if (previous === undefined)
    return [
      'first build of this step (no earlier build of this Dockerfile to compare with, here or in an imported cache)',
    ];
  if (previous.key === current.key)
    return ['the cached layer for this key is gone (pruned or never completed)'];
  const before = new Map(previous.components.map((component) => [component.name, component.value]));
  const after = new Map(current.components.map((component) => [component.name, component.value]));
  const reasons: string[] = [];
  const instruction = after.get('instruction') ?? '';
  const verb = instruction.split(' ')[0] ?? '';
  for (const [name, value] of after) {
    const old = before.get(name);
    if (old === value) continue;
    if (name === PARENT_KEY || name === LAYERS_BELOW) {
      if (!reasons.some((reason) => reason.startsWith('parent changed') || reason.startsWith('base '))) {
        const base = previousMissInStage === undefined ? baseChange(previous.base, current.base) : undefined;
        reasons.push(
          previousMissInStage !== undefined
            ? `parent changed (${previousMissInStage})`
            : (base ?? 'parent changed (the base image or an earlier instruction is different)'),
        );
      }
    } else if (name === 'sources' && current.files !== undefined && previous.files !== undefined) {
      const flag = (name: string, text: string | undefined): string | undefined =>
        new RegExp(`(?:^| )--${name}=(\\S+)`).exec(text ?? '')?.[1];
      const was = before.get('instruction');
      const fromInstruction = {
        mode: flag('chmod', was) !== flag('chmod', instruction),
        owner: flag('chown', was) !== flag('chown', instruction),
      };
      const changes = explainSourceChanges(previous.files, current.files, fromInstruction);
      const named =
        imported === undefined ? changes : withContentDigests(changes, previous.files, current.files);
      for (const change of named) reasons.push(`${verb}: context file ${change}`);
    } else if (name.startsWith('mount ')) {
      reasons.push(...explainMount(name.slice(6), old, value, previous, current));
    } else if (name.startsWith('arg ')) {
      reasons.push(describe(`${verb}: build arg ${name.slice(4)}`, old, value));
    } else if (name.startsWith('env ')) {
      reasons.push(describe(`${verb}: ENV ${name.slice(4)}`, old, value));
    } else {
      reasons.push(describe(`${verb}: ${name}`, old, value));
    }
  }
  for (const [name, old] of before) {
    if (after.has(name)) continue;
    if (name.startsWith('arg '))
      reasons.push(`${verb}: build arg ${name.slice(4)} no longer set (was ${old})`);
    else if (name.startsWith('env '))
      reasons.push(`${verb}: ENV ${name.slice(4)} no longer set (was ${old})`);
    else reasons.push(`${verb}: ${name} no longer applies (was ${old})`);
  }
  return reasons.length > 0 ? reasons : ['inputs changed'];
}

/**
 * A changed mount, naming the mounted path: which context files changed under a bind mount, or
 * that the stage or image it shows changed.
 */
function explainMount(
  target: string,
  old: string | undefined,
  value: string,
  previous: ExplainStep,
  current: ExplainStep,
): string[] {
  const what = `RUN: bind mount ${target}`;
  const name = `mount ${target}`;
  const before = previous.mountFiles?.[name];
  const after = current.mountFiles?.[name];
  const source = /^bind source=(\S+)/.exec(value)?.[1];
  if (old !== undefined && before !== undefined && after !== undefined) {
    const changes = explainSourceChanges(before, after);
    if (changes.length > 0) return changes.map((change) => `${what}: context file ${change}`);
  }
  if (
    old !== undefined &&
    source !== undefined &&
    /^bind .* from /.test(value) &&
    /^bind .* from /.test(old)
  ) {
    const from = / from (stage \S+|image \S+)/.exec(value)?.[1] ?? 'its source';
    return [`${what} (source ${source}): ${from} changed`];
  }
  return [describe(`RUN: mount ${target}`, old, value)];
}

/** A stage's base that is another image now: by reference and digest. */
function baseChange(before: RecordedBase | undefined, after: RecordedBase | undefined): string | undefined {
  if (before === undefined || after === undefined) return undefined;
  if (before.reference === after.reference && before.digest === after.digest) return undefined;
  if (before.reference === after.reference)
    return `base ${after.reference} changed: ${before.digest} → ${after.digest}`;
  return `base changed: ${before.reference} (${before.digest}) → ${after.reference} (${after.digest})`;
}

/** `src/app.js changed (content)` → `src/app.js changed (content sha256:1a2b… → sha256:3c4d…)`. */
function withContentDigests(
  changes: readonly string[],
  before: Readonly<Record<string, SourceFileDigest>>,
  after: Readonly<Record<string, SourceFileDigest>>,
): string[] {
  return changes.map((change) => {
    for (const [name, now] of Object.entries(after)) {
      const was = before[name];
      const prefix = `${name} changed (`;
      if (was === undefined || !change.startsWith(prefix)) continue;
      if (was.contentDigest === now.contentDigest) continue;
      const digests = `content ${shortDigest(was.contentDigest)} → ${shortDigest(now.contentDigest)}`;
      return prefix + change.slice(prefix.length).replace(/^((?:[^,]*, )*?)content(?=[,)])/, `$1${digests}`);
    }
    return change;
  });
}

function shortDigest(digest: string | undefined): string {
  return digest === undefined ? 'none' : digest.slice(0, 'sha256:'.length + 12);
}

function describe(what: string, old: string | undefined, value: string): string {
  if (old === undefined) return `${what} set to ${short(value)}`;
  return `${what} changed ${short(old)} → ${short(value)}`;
}

function short(value: string): string {
  return value.length > 60 ? `${value.slice(0, 57)}...` : value;
}
