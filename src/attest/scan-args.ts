import { parseDockerfile, type ArgInstruction, type Stage } from '../parser/index.js';

/**
 * BuildKit's `BUILDKIT_SBOM_SCAN_CONTEXT` and `BUILDKIT_SBOM_SCAN_STAGE` build args
 * (frontend/dockerfile/dockerfile2llb/convert.go): each stage reads them from the global ARGs
 * (before the first FROM) and from its own ARG lines, a `--build-arg` overriding a declared
 * default; `true`/`false`, or a comma-separated list of stage names the value enables. An ARG
 * the Dockerfile does not declare does nothing, whatever `--build-arg` says, as in BuildKit.
 * SCAN_CONTEXT counts for the target stage; SCAN_STAGE for every other stage the build ran.
 */

const SCAN_CONTEXT = 'BUILDKIT_SBOM_SCAN_CONTEXT';
const SCAN_STAGE = 'BUILDKIT_SBOM_SCAN_STAGE';

function enabledFor(stageName: string | undefined, value: string): boolean {
  const lower = value.trim().toLowerCase();
  if (lower === 'true' || lower === '1') return true;
  if (lower === 'false' || lower === '0' || lower === '') return false;
  return (
    stageName !== undefined &&
    lower
      .split(',')
      .map((name) => name.trim())
      .includes(stageName)
  );
}

function declared(
  instructions: readonly ArgInstruction[],
  name: string,
  buildArgs: Readonly<Record<string, string>>,
): string | undefined {
  let value: string | undefined;
  for (const instruction of instructions)
    for (const declaration of instruction.declarations)
      if (declaration.name === name) value = buildArgs[name] ?? declaration.defaultValue ?? value;
  return value;
}

function stageSetting(
  stage: Stage,
  metaArgs: readonly ArgInstruction[],
  name: string,
  buildArgs: Readonly<Record<string, string>>,
): boolean {
  const global = declared(metaArgs, name, buildArgs);
  const own = declared(
    stage.instructions.filter((instruction): instruction is ArgInstruction => instruction.kind === 'arg'),
    name,
    buildArgs,
  );
  const value = own ?? global;
  return value !== undefined && enabledFor(stage.name, value);
}

export interface SbomScanSettings {
  /** Scan the build context as well (the target stage asks for it). */
  readonly context: boolean;
  /** Names (or indexes, for unnamed stages) of the other stages that ask to be scanned. */
  readonly stages: readonly string[];
}

export function sbomScanSettings(
  dockerfile: string | Uint8Array,
  buildArgs: Readonly<Record<string, string>>,
  target: string | undefined,
): SbomScanSettings {
  const parsed = parseDockerfile(dockerfile);
  if (parsed.stages.length === 0) return { context: false, stages: [] };
  const wanted = target?.toLowerCase();
  const targetStage =
    parsed.stages.find((stage) => stage.name === wanted) ?? parsed.stages[parsed.stages.length - 1]!;
  return {
    context: stageSetting(targetStage, parsed.metaArgs, SCAN_CONTEXT, buildArgs),
    stages: parsed.stages
      .filter((stage) => stage !== targetStage && stageSetting(stage, parsed.metaArgs, SCAN_STAGE, buildArgs))
      .map((stage) => stage.name ?? String(stage.index)),
  };
}
