import { StratumError } from '../errors.js';
import { expandWord, formatDiagnostic, parseDockerfile } from '../parser/index.js';
import type { Instruction, ParseResult, Stage } from '../parser/index.js';
import { BuildArgUsage } from './args.js';

/**
 * From Dockerfile bytes to the list of stages a build needs, in the order to build them.
 * FROM lines are expanded with the meta ARGs here; everything else is expanded per step.
 */

export type StageBase =
  | { readonly kind: 'scratch' }
  | { readonly kind: 'stage'; readonly index: number }
  | { readonly kind: 'image'; readonly reference: string };

export interface PlannedStage {
  readonly stage: Stage;
  /** The stage's name for messages: its `AS` name, or its index. */
  readonly label: string;
  readonly base: StageBase;
  /** The FROM line's image after expansion, as written in messages. */
  readonly baseText: string;
  readonly platform?: string;
}

export interface BuildPlan {
  readonly parsed: ParseResult;
  readonly source: string | Uint8Array;
  /** Meta ARG values (after --build-arg), visible to FROM and to re-declarations in stages. */
  readonly metaArgs: ReadonlyMap<string, string>;
  /** Every stage of the file, indexed as written. */
  readonly stages: readonly PlannedStage[];
  /** Indexes of the stages the target needs, dependencies first, the target last. */
  readonly order: readonly number[];
  /** For each stage in `order`, the stages it needs built first (its base, its --from sources). */
  readonly dependencies: ReadonlyMap<number, readonly number[]>;
  readonly target: number;
}

export function parseOrThrow(source: string | Uint8Array, file: string): ParseResult {
  const parsed = parseDockerfile(source, { file });
  const firstError = parsed.diagnostics.find((diagnostic) => diagnostic.severity === 'error');
  if (firstError !== undefined) throw new StratumError('PARSE', formatDiagnostic(firstError, source));
  return parsed;
}

export function planBuild(
  source: string | Uint8Array,
  file: string,
  buildArgs: BuildArgUsage,
  predefined: ReadonlyMap<string, string>,
  target: string | undefined,
): BuildPlan {
  const parsed = parseOrThrow(source, file);
  const metaArgs = new Map(predefined);
  for (const arg of parsed.metaArgs) {
    for (const declaration of arg.declarations) {
      const given = buildArgs.get(declaration.name);
      if (given !== undefined) metaArgs.set(declaration.name, given);
      else if (declaration.defaultValue !== undefined) {
        metaArgs.set(
          declaration.name,
          expandWord(declaration.defaultValue, metaArgs, {
            escapeChar: parsed.escapeChar,
            where: `${file}:${arg.location.line}`,
          }),
        );
      }
    }
  }

  const byName = new Map<string, number>();
  const stages: PlannedStage[] = [];
  for (const stage of parsed.stages) {
    const where = `${file}:${stage.from.location.line}`;
    const baseText = expandWord(stage.from.image, metaArgs, { escapeChar: parsed.escapeChar, where });
    if (baseText === '')
      throw new StratumError(
        'BUILD_FAILED',
        `${where}: FROM: base name (${stage.from.image}) should not be blank`,
      );
    let base: StageBase;
    // FROM finds a stage by its name exactly as written, where COPY --from and --target ignore
    // case: stage names are stored lower-cased, and BuildKit's addState looks the base name up
    // unchanged, so `FROM Build` after `AS Build` is an image reference, refused as not lower
    // case (BuildKit: "failed to parse stage name").
    const stageIndex = byName.get(baseText);
    if (baseText.toLowerCase() === 'scratch') base = { kind: 'scratch' };
    else if (stageIndex !== undefined) base = { kind: 'stage', index: stageIndex };
    else base = { kind: 'image', reference: baseText };
    const platform =
      stage.from.platform === undefined
        ? undefined
        : expandWord(stage.from.platform, metaArgs, { escapeChar: parsed.escapeChar, where });
    stages.push({
      stage,
      label: stage.name ?? String(stage.index),
      base,
      baseText,
      ...(platform === undefined ? {} : { platform }),
    });
    // A repeated stage name is a warning in the parser; like BuildKit, the later stage wins.
    if (stage.name !== undefined) byName.set(stage.name, stage.index);
  }
  if (stages.length === 0) throw new StratumError('PARSE', `${file}: no FROM instruction`);

  let targetIndex = stages.length - 1;
  if (target !== undefined) {
    const found = byName.get(target.toLowerCase());
    if (found === undefined) {
      const names = [...byName.keys()];
      throw new StratumError(
        'USAGE',
        `--target ${target}: no stage named "${target}" in ${file}${names.length > 0 ? ` (stages: ${names.join(', ')})` : ''}`,
      );
    }
    targetIndex = found;
  }

  const order: number[] = [];
  const visiting = new Set<number>();
  const dependencies = new Map<number, number[]>();
  const visit = (index: number): void => {
    if (order.includes(index)) return;
    if (visiting.has(index))
      throw new StratumError('BUILD_FAILED', `${file}: circular dependency on stage ${stages[index]!.label}`);
    visiting.add(index);
    const planned = stages[index]!;
    const needs: number[] = [];
    if (planned.base.kind === 'stage') needs.push(planned.base.index);
    for (const dependency of stageReferences(planned.stage.instructions, metaArgs, parsed.escapeChar)) {
      const depIndex = resolveStageReference(dependency, byName, index);
      if (depIndex !== undefined) needs.push(depIndex);
    }
    for (const need of needs) visit(need);
    dependencies.set(index, needs);
    visiting.delete(index);
    order.push(index);
  };
  visit(targetIndex);
  return { parsed, source, metaArgs, stages, order, dependencies, target: targetIndex };
}

/**
 * `--from` values of COPY and of RUN mounts, expanded with the meta ARGs as far as possible (a
 * stage ARG in --from is resolved again when the step runs).
 */
function stageReferences(
  instructions: readonly Instruction[],
  metaArgs: ReadonlyMap<string, string>,
  escapeChar: '\\' | '`',
): string[] {
  const out: string[] = [];
  const expand = (text: string): string => {
    try {
      return expandWord(text, metaArgs, { escapeChar });
    } catch {
      return text;
    }
  };
  for (const instruction of instructions) {
    const inner = instruction.kind === 'onbuild' ? instruction.trigger : instruction;
    if (inner.kind === 'copy' && inner.from !== undefined) out.push(expand(inner.from));
    if (inner.kind === 'run') {
      for (const mount of inner.mounts) {
        if ((mount.type === 'bind' || mount.type === 'cache') && mount.from !== undefined)
          out.push(expand(mount.from));
      }
    }
  }
  return out;
}

/** A stage by name (case-insensitive) or by an index lower than the current stage's. */
export function resolveStageReference(
  reference: string,
  byName: ReadonlyMap<string, number>,
  currentIndex: number,
): number | undefined {
  const named = byName.get(reference.toLowerCase());
  if (named !== undefined && named < currentIndex) return named;
  if (/^\d+$/.test(reference)) {
    const index = Number(reference);
    if (index < currentIndex) return index;
  }
  return undefined;
}

export function stageNames(plan: BuildPlan): ReadonlyMap<string, number> {
  const names = new Map<string, number>();
  for (const planned of plan.stages)
    if (planned.stage.name !== undefined) names.set(planned.stage.name, planned.stage.index);
  return names;
}
