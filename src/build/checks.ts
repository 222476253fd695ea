// BuildKit's build checks and `--call` subrequests wired to a build's inputs: the check
// configuration (the `# check=` directive, or the BUILDKIT_DOCKERFILE_CHECK build arg, which
// replaces it), the .dockerignore for CopyIgnoredFile, the platform ARGs, and the text or JSON
// buildx prints. The rules and formats themselves are plain functions in src/parser/.
import { basename } from 'node:path';
import { StratumError } from '../errors.js';
import { isIgnored, loadDockerignore } from '../executor/context/index.js';
import { platformArgs } from '../executor/args.js';
import { targetPlatforms } from '../executor/platforms.js';
import { hostPlatform } from '../oci/platform.js';
import {
  checkDockerfile,
  checkResultJson,
  formatCheckResult,
  formatOutline,
  formatTargets,
  formatDiagnostic,
  listTargets,
  outlineJson,
  outlineTarget,
  parseCheckConfig,
  parseDockerfile,
  reachableStages,
  shortWarning,
  targetsJson,
  type CheckConfig,
  type CheckWarning,
  type ParseResult,
} from '../parser/index.js';

export type CallName = 'build' | 'check' | 'outline' | 'targets';

export interface CallSpec {
  readonly name: CallName;
  readonly format: 'text' | 'json';
  /** buildx's `ignorestatus=true`: exit 0 even when checks found something. */
  readonly ignoreStatus: boolean;
}

/** buildx's `--call NAME[,format=json][,ignorestatus=BOOL]` (util/buildflags/callfunc.go); `lint` is `check`. */
export function parseCallFlag(value: string, format: string | undefined): CallSpec {
  let name: string | undefined;
  let callFormat = format;
  let ignoreStatus = false;
  for (const field of value.split(',')) {
    const eq = field.indexOf('=');
    if (eq < 0) {
      if (name !== undefined) throw new StratumError('USAGE', `--call ${value}: invalid print value`);
      name = field;
      continue;
    }
    const key = field.slice(0, eq);
    const fieldValue = field.slice(eq + 1);
    if (key === 'format') callFormat = fieldValue;
    else if (key === 'ignorestatus') ignoreStatus = ['1', 't', 'true', 'TRUE', 'True'].includes(fieldValue);
    else throw new StratumError('USAGE', `--call ${value}: invalid print field: ${field}`);
  }
  const normalized = name === 'lint' ? 'check' : (name ?? 'build');
  if (!['build', 'check', 'outline', 'targets'].includes(normalized))
    throw new StratumError('USAGE', `--call ${value}: expected build, check, outline or targets`);
  if (callFormat !== undefined && callFormat !== 'json' && callFormat !== 'text')
    throw new StratumError('USAGE', `--format ${callFormat}: expected text or json`);
  return { name: normalized as CallName, format: callFormat === 'json' ? 'json' : 'text', ignoreStatus };
}

export interface DockerfileInputs {
  readonly dockerfile: string | Uint8Array;
  /** The name shown in messages and excerpts (`Dockerfile`). */
  readonly file: string;
  readonly contextDir: string;
  /** Host path of the Dockerfile, for `<Dockerfile>.dockerignore`; undefined for stdin. */
  readonly dockerfilePath?: string;
  readonly buildArgs?: Readonly<Record<string, string>>;
  readonly target?: string;
  readonly platform?: string;
}

export interface CheckRun {
  readonly parsed: ParseResult;
  readonly source: string;
  readonly config: CheckConfig;
  readonly warnings: readonly CheckWarning[];
}

function parsedOrThrow(inputs: DockerfileInputs): { parsed: ParseResult; source: string } {
  const source =
    typeof inputs.dockerfile === 'string'
      ? inputs.dockerfile
      : Buffer.from(inputs.dockerfile).toString('utf8');
  const parsed = parseDockerfile(inputs.dockerfile, { file: inputs.file });
  const error = parsed.diagnostics.find((diagnostic) => diagnostic.severity === 'error');
  if (error !== undefined) throw new StratumError('PARSE', formatDiagnostic(error, source).split('\n')[0]!);
  return { parsed, source };
}

function platformArgsFor(inputs: DockerfileInputs, target: string | undefined): Map<string, string> {
  const platform = targetPlatforms(inputs.platform)[0] ?? hostPlatform();
  const args = new Map(platformArgs(platform, hostPlatform()));
  args.set('TARGETSTAGE', target ?? 'default');
  return args;
}

/** The check configuration: the build arg if given (it replaces the directive), else `# check=`. */
function checkConfig(parsed: ParseResult, buildArgs: Readonly<Record<string, string>>): CheckConfig {
  const fromArg = buildArgs['BUILDKIT_DOCKERFILE_CHECK'];
  const text = fromArg ?? parsed.directives.find((directive) => directive.name === 'check')?.value ?? '';
  const config = parseCheckConfig(text);
  if ('invalid' in config) {
    throw new StratumError(
      'USAGE',
      fromArg === undefined
        ? `${parsed.file}: failed to parse check options: ${config.invalid}`
        : `failed to parse BUILDKIT_DOCKERFILE_CHECK: ${config.invalid}`,
    );
  }
  return config;
}

/**
 * Runs the checks. `allStages`: every stage, as `--check` does without --target; otherwise
 * the target and the stages it needs, as a build dispatches them.
 */
export async function runChecks(inputs: DockerfileInputs, allStages: boolean): Promise<CheckRun> {
  if (!allStages) {
    // In a build, a Dockerfile that does not parse fails in the build engine with its own
    // located message; the checks have nothing to add.
    const parsed = parseDockerfile(inputs.dockerfile, { file: inputs.file });
    if (!parsed.ok) return { parsed, source: '', config: checkConfig(parsed, {}), warnings: [] };
  }
  const { parsed, source } = parsedOrThrow(inputs);
  const buildArgs = inputs.buildArgs ?? {};
  const config = checkConfig(parsed, buildArgs);
  const ignoreFile = await loadDockerignore(inputs.contextDir, inputs.dockerfilePath);
  const matcher = ignoreFile.matcher;
  const lastName = parsed.stages[parsed.stages.length - 1]?.name;
  // `build --watch` checks the same Dockerfile again at every save (~2 ms a build here): the
  // last result is kept for the same parse (parseDockerfile keeps it), inputs and ignore rules.
  const key = JSON.stringify([
    allStages,
    buildArgs,
    inputs.target,
    inputs.platform,
    ignoreFile.path,
    matcher.patterns.map((pattern) => `${pattern.exception ? '!' : ''}${pattern.pattern}`),
  ]);
  if (lastChecks?.parsed === parsed && lastChecks.key === key)
    return { parsed, source, config, warnings: lastChecks.warnings };
  const warnings = checkDockerfile(parsed, {
    config,
    buildArgs: new Map(Object.entries(buildArgs)),
    platformArgs: platformArgsFor(inputs, inputs.target ?? lastName),
    ...(ignoreFile.path === undefined
      ? {}
      : {
          ignore: {
            matches: (path: string) => isIgnored(matcher, path),
            patterns: matcher.patterns.map((pattern) => `${pattern.exception ? '!' : ''}${pattern.pattern}`),
          },
        }),
    ...(allStages && inputs.target === undefined ? {} : { stages: reachableStages(parsed, inputs.target) }),
  });
  lastChecks = { parsed, key, warnings };
  return { parsed, source, config, warnings };
}

let lastChecks:
  | { readonly parsed: ParseResult; readonly key: string; readonly warnings: readonly CheckWarning[] }
  | undefined;

/** The one-line error a build with `# check=error=true` fails with (linter.Error). */
export function checkFailure(run: CheckRun): StratumError | undefined {
  if (!run.config.error || run.warnings.length === 0) return undefined;
  const rules = [...new Set(run.warnings.map((warning) => warning.rule))];
  return new StratumError(
    'BUILD_FAILED',
    `${run.parsed.file}: lint violation found for rules: ${rules.join(', ')}`,
    {
      output: run.warnings.map(shortWarning),
    },
  );
}

export interface CallResult {
  /** What goes to standard output. */
  readonly text: string;
  readonly exitCode: number;
}

/** `--call=check|outline|targets`: nothing is built; the answer as buildx prints it. */
export async function runCall(call: CallSpec, inputs: DockerfileInputs): Promise<CallResult> {
  const display = basename(inputs.file);
  switch (call.name) {
    case 'check': {
      const run = await runChecks(inputs, true);
      const failed = run.warnings.length > 0;
      return {
        text:
          call.format === 'json'
            ? `${checkResultJson(run.warnings, display, run.source)}\n`
            : formatCheckResult(run.warnings, display, run.source),
        exitCode: failed && !call.ignoreStatus ? 1 : 0,
      };
    }
    case 'targets': {
      const { parsed, source } = parsedOrThrow(inputs);
      const targets = listTargets(parsed);
      return {
        text: call.format === 'json' ? `${targetsJson(targets, source)}\n` : formatTargets(targets),
        exitCode: 0,
      };
    }
    case 'outline': {
      const { parsed, source } = parsedOrThrow(inputs);
      if (inputs.target !== undefined && reachableStages(parsed, inputs.target).size === 0)
        throw new StratumError(
          'USAGE',
          `--target ${inputs.target}: no stage named "${inputs.target}" in ${inputs.file}`,
        );
      const lastName = parsed.stages[parsed.stages.length - 1]?.name;
      const outline = outlineTarget(parsed, {
        ...(inputs.target === undefined ? {} : { target: inputs.target }),
        buildArgs: new Map(Object.entries(inputs.buildArgs ?? {})),
        platformArgs: platformArgsFor(inputs, inputs.target ?? lastName),
      });
      return {
        text: call.format === 'json' ? `${outlineJson(outline, source)}\n` : formatOutline(outline),
        exitCode: 0,
      };
    }
    case 'build':
      throw new StratumError('USAGE', '--call build builds the image; nothing to print');
  }
}
