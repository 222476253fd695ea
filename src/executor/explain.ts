import { explainSourceChanges } from './context/index.js';
import type { ExplainStep } from './build-context.js';

/** Key component names: the key of the step before, and the ChainID of the layers so far. */
export const PARENT_KEY = 'previous step';
export const LAYERS_BELOW = 'layers below (ChainID)';

/**
 * Why a step missed the cache, in plain words, by comparing its key components with those of
 * the last build of the same step of the same Dockerfile.
 */
export function explainMiss(
  previous: ExplainStep | undefined,
  current: ExplainStep,
  previousMissInStage: string | undefined,
  cacheUsed: boolean,
): string[] {
  if (!cacheUsed) return ['cache disabled for this stage (--no-cache)'];
  if (previous === undefined)
    return ['first build of this step (no earlier build of this Dockerfile to compare with)'];
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
      if (!reasons.some((reason) => reason.startsWith('parent changed'))) {
        reasons.push(
          previousMissInStage !== undefined
            ? `parent changed (${previousMissInStage})`
            : 'parent changed (the base image or an earlier instruction is different)',
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
      for (const change of explainSourceChanges(previous.files, current.files, fromInstruction))
        reasons.push(`${verb}: context file ${change}`);
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

function describe(what: string, old: string | undefined, value: string): string {
  if (old === undefined) return `${what} set to ${short(value)}`;
  return `${what} changed ${short(old)} → ${short(value)}`;
}

function short(value: string): string {
  return value.length > 60 ? `${value.slice(0, 57)}...` : value;
}
