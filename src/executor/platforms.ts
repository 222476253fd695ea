import { StratumError } from '../errors.js';
import {
  formatPlatform,
  hostPlatform,
  parsePlatform,
  parsePlatformList,
  platformMatches,
} from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import type { BuildPlan, PlannedStage } from './plan.js';

/**
 * Which platforms a build makes and which platform each stage runs for, as BuildKit decides:
 * `--platform a,b` names the targets (default: the host); a stage runs for its FROM
 * `--platform` when it has one (`$BUILDPLATFORM` for the cross-compilation pattern), else for
 * the target. A stage whose inputs are the same for every target is built once and shared.
 */

/** The build's target platforms: `--platform` (a comma-separated list) or the host's. */
export function targetPlatforms(requested: string | undefined): readonly Platform[] {
  if (requested === undefined || requested.trim() === '') return [hostPlatform()];
  try {
    return parsePlatformList(requested);
  } catch (error) {
    if (error instanceof StratumError) throw new StratumError('USAGE', `--platform: ${error.message}`);
    throw error;
  }
}

/** The platform a stage runs for: its FROM --platform (already expanded) or the build's target. */
export function stagePlatform(planned: PlannedStage, target: Platform, file: string): Platform {
  if (planned.platform === undefined || planned.platform.trim() === '') return target;
  try {
    return parsePlatform(planned.platform);
  } catch (error) {
    if (error instanceof StratumError) {
      throw new StratumError(
        'BUILD_FAILED',
        `${file}:${planned.stage.from.location.line}: FROM --platform=${planned.stage.from.platform ?? ''}: ${error.message}`,
      );
    }
    throw error;
  }
}

/** The label a stage has in progress and messages: `build`, or `build (linux/arm64)` when several platforms are built. */
export function stageLabel(label: string, platform: Platform | undefined): string {
  return platform === undefined ? label : `${label} (${formatPlatform(platform)})`;
}

/** The stage name inside a label made by stageLabel (for --no-cache-filter). */
export function stageNameOfLabel(label: string): string {
  const space = label.indexOf(' ');
  return space < 0 ? label : label.slice(0, space);
}

/**
 * The stages (by index) whose inputs do not depend on the target platform, so one build of them
 * serves every target: the same FROM --platform and base after expansion, the same value for
 * every ARG the stage declares (TARGETARCH declared in a `$BUILDPLATFORM` stage makes it differ),
 * and only such stages as dependencies. With one target nothing needs sharing.
 */
export function sharedStages(
  plans: readonly BuildPlan[],
  targets: readonly Platform[],
  file: string,
): ReadonlySet<number> {
  const shared = new Set<number>();
  if (plans.length < 2) return shared;
  const first = plans[0]!;
  for (const index of first.order) {
    const signatures = plans.map((plan, p) => {
      const planned = plan.stages[index]!;
      const declared = planned.stage.instructions.flatMap((instruction) =>
        instruction.kind === 'arg' ? instruction.declarations.map((declaration) => declaration.name) : [],
      );
      return JSON.stringify({
        platform: formatPlatform(stagePlatform(planned, targets[p]!, file)),
        base: planned.baseText,
        args: declared.map((name) => [name, plan.metaArgs.get(name) ?? null]),
        needs: plan.dependencies.get(index) ?? null,
      });
    });
    const needs = first.dependencies.get(index) ?? [];
    if (
      signatures.every((signature) => signature === signatures[0]) &&
      needs.every((need) => shared.has(need))
    )
      shared.add(index);
  }
  return shared;
}

/**
 * BuildKit's warning for a base whose config names another platform than the stage's (a
 * single-platform image used for a different target): the build goes on with it.
 */
export function baseMismatchWarning(
  reference: string,
  actual: Platform,
  expected: Platform,
  line: number,
): string | undefined {
  if (platformMatches(expected, actual)) return undefined;
  return `InvalidBaseImagePlatform: Base image ${reference} was pulled with platform "${formatPlatform(actual)}", expected "${formatPlatform(expected)}" for current build (line ${line})`;
}
