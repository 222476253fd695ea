/**
 * BuildKit's Dockerfile checks (`docker build --check`) over a parsed Dockerfile: each rule of
 * check-rules.ts found where BuildKit's frontend finds it (instructions/parse.go,
 * dockerfile2llb/convert.go, validations.go, convert_expose.go), with its message and the
 * instruction's line range. Pure: what a check needs from outside (build args, a base image's
 * environment, the .dockerignore) comes in as options.
 */
import { configFromComments, DEFAULT_CHECK_CONFIG, ruleEnabled, type CheckConfig } from './check-config.js';
import { RULES, type CheckRule, type RuleName } from './check-rules.js';
import { lexWord } from './shell-lex.js';
import type { Instruction, ParseResult, SourceRange, Stage } from './types.js';

export interface CheckWarning {
  readonly rule: RuleName;
  readonly description: string;
  readonly url?: string;
  /** The formatted message (BuildKit's `detail`). */
  readonly message: string;
  /** 1-based lines (BuildKit's ranges carry no columns for these). */
  readonly ranges: readonly { readonly start: number; readonly end: number }[];
}

export interface CheckOptions {
  readonly config?: CheckConfig;
  /** `--build-arg` values. */
  readonly buildArgs?: ReadonlyMap<string, string>;
  /** BUILDPLATFORM, TARGETPLATFORM, … and TARGETSTAGE, as the build defines them. */
  readonly platformArgs?: ReadonlyMap<string, string>;
  /**
   * The environment of an image a stage starts from (its config Env), or undefined when it is
   * not known: UndefinedVar then stays quiet in that stage rather than guess.
   */
  readonly baseEnv?: (stage: Stage, image: string) => ReadonlyMap<string, string> | undefined;
  /**
   * The .dockerignore: whether a context path (or a parent) is excluded, and its patterns as
   * written (`!` exceptions make the check stay quiet, as BuildKit's does).
   */
  readonly ignore?: { readonly matches: (path: string) => boolean; readonly patterns: readonly string[] };
  /** Only these stages' instructions are dispatched (a build's target and what it needs); default all. */
  readonly stages?: ReadonlySet<number>;
}

/** Build args BuildKit never turns into environment variables (nonEnvArgs). */
const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);
const RESERVED_STAGE_NAMES = new Set(['context', 'scratch']);
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

type Report = <A extends readonly string[]>(
  rule: CheckRule<A> & { readonly name: RuleName },
  at: readonly SourceRange[] | SourceRange,
  ...args: A
) => void;

/** Runs every enabled rule; warnings come back in the order BuildKit reports them. */
export function checkDockerfile(parsed: ParseResult, options: CheckOptions = {}): CheckWarning[] {
  const fileConfig = options.config ?? DEFAULT_CHECK_CONFIG;
  const warnings: CheckWarning[] = [];
  const reporter =
    (config: CheckConfig): Report =>
    (rule, at, ...args) => {
      if (!ruleEnabled(config, rule)) return;
      const list = Array.isArray(at) ? (at as readonly SourceRange[]) : [at as SourceRange];
      warnings.push({
        rule: rule.name,
        description: rule.description,
        ...(rule.url === undefined ? {} : { url: rule.url }),
        message: rule.format(...args),
        ranges: list.map((range) => ({ start: range.line, end: range.endLine })),
      });
    };
  const report = reporter(fileConfig);
  const forInstruction = (instruction: Instruction): Report =>
    reporter(configFromComments(fileConfig, instruction.comments));

  for (const diagnostic of parsed.diagnostics) {
    if (diagnostic.rule === 'NoEmptyContinuation')
      report(RULES.NoEmptyContinuation, { line: diagnostic.line, column: 1, endLine: diagnostic.line });
  }
  checkParseTime(parsed, forInstruction);
  checkStageNames(parsed.stages, report);
  checkCommandCasing(parsed.stages, report);
  checkDefaultBaseNames(parsed, options, report);
  checkStages(parsed, options, forInstruction);
  return warnings;
}

/** What BuildKit's instructions.Parse reports for every instruction, reachable or not. */
function checkParseTime(parsed: ParseResult, forInstruction: (instruction: Instruction) => Report): void {
  const all: Instruction[] = [...parsed.metaArgs];
  for (const stage of parsed.stages) all.push(stage.from, ...stage.instructions);
  all.sort((a, b) => a.location.line - b.location.line);
  for (const instruction of all) {
    const report = forInstruction(instruction);
    if (instruction.kind === 'maintainer') report(RULES.MaintainerDeprecated, instruction.location);
    if (instruction.kind === 'from') checkFromLine(instruction, report);
    if (instruction.kind === 'arg') {
      const names = instruction.declarations.map((declaration) => declaration.name);
      checkDescription('ARG', names, instruction, report);
    }
  }
}

function checkFromLine(from: Extract<Instruction, { kind: 'from' }>, report: Report): void {
  const args = from.args;
  if (args.length === 3) {
    const raw = args[2]!;
    if (raw !== raw.toLowerCase()) report(RULES.StageNameCasing, from.location, raw);
    const keyword = from.keyword;
    const lower = keyword === keyword.toLowerCase();
    const upper = keyword === keyword.toUpperCase();
    if (lower && args[1] !== args[1]!.toLowerCase())
      report(RULES.FromAsCasing, from.location, keyword, args[1]!);
    else if (!lower && upper && args[1] !== args[1]!.toUpperCase())
      report(RULES.FromAsCasing, from.location, keyword, args[1]!);
  }
  if (from.stageName !== undefined) checkDescription('FROM', [from.stageName], from, report);
}

/** InvalidDefinitionDescription: a comment right above FROM/ARG should start with the name. */
function checkDescription(
  instruction: string,
  names: readonly string[],
  at: Instruction,
  report: Report,
): void {
  const comments = at.comments ?? [];
  if (comments.length === 0 || names.length === 0) return;
  const first = comments[comments.length - 1]!.split(' ')[0]!;
  if (names.includes(first)) return;
  report(
    RULES.InvalidDefinitionDescription,
    at.location,
    instruction,
    names.length > 1 ? '<arg_key>' : names[0]!,
  );
}

function checkStageNames(stages: readonly Stage[], report: Report): void {
  const seen = new Set<string>();
  for (const stage of stages) {
    if (stage.name === undefined) continue;
    if (RESERVED_STAGE_NAMES.has(stage.name))
      report(RULES.ReservedStageName, stage.from.location, stage.name);
    if (seen.has(stage.name)) report(RULES.DuplicateStageName, stage.from.location, stage.name);
    seen.add(stage.name);
  }
}

function checkCommandCasing(stages: readonly Stage[], report: Report): void {
  const consistent = (name: string): boolean => name === name.toLowerCase() || name === name.toUpperCase();
  let lower = 0;
  let upper = 0;
  const all = stages.flatMap((stage) => [stage.from, ...stage.instructions]);
  for (const instruction of all) {
    if (!consistent(instruction.keyword)) continue;
    if (instruction.keyword === instruction.keyword.toLowerCase()) lower++;
    else upper++;
  }
  const majorityLower = lower > upper;
  for (const instruction of all) {
    const name = instruction.keyword;
    let casing = '';
    if (majorityLower && name.toLowerCase() !== name) casing = 'lowercase';
    else if (!majorityLower && name.toUpperCase() !== name) casing = 'uppercase';
    if (casing !== '') report(RULES.ConsistentInstructionCasing, instruction.location, name, casing);
  }
}

/** The meta ARGs as the build sees them: platform args, then each ARG's build arg or default. */
function metaArgValues(
  parsed: ParseResult,
  platformArgs: ReadonlyMap<string, string>,
  buildArgs: ReadonlyMap<string, string>,
): Map<string, string> | undefined {
  const values = new Map(platformArgs);
  for (const arg of parsed.metaArgs) {
    for (const declaration of arg.declarations) {
      let value = buildArgs.get(declaration.name);
      if (value === undefined && declaration.defaultValue !== undefined) {
        const lexed = lexWord(declaration.defaultValue, values, { escapeChar: parsed.escapeChar });
        if (!lexed.ok) return undefined;
        value = lexed.value;
      }
      if (value !== undefined) values.set(declaration.name, value);
    }
  }
  return values;
}

/** InvalidDefaultArgInFrom: with no build args, every FROM must still name a valid image. */
function checkDefaultBaseNames(parsed: ParseResult, options: CheckOptions, report: Report): void {
  const defaults = metaArgValues(parsed, options.platformArgs ?? new Map(), new Map());
  if (defaults === undefined) return;
  for (const stage of parsed.stages) {
    const lexed = lexWord(stage.from.image, defaults, { escapeChar: parsed.escapeChar });
    if (!lexed.ok) return;
    if (!isValidReference(lexed.value) && !STRATUM_TRANSPORT.test(lexed.value))
      report(RULES.InvalidDefaultArgInFrom, stage.from.location, stage.from.image);
  }
}

/**
 * stratum's own FROM forms, which BuildKit has not (oci:DIR[:TAG], docker-archive:FILE, ...):
 * valid bases, not invalid references. The transports of src/oci/reference.ts, which the parser
 * may not import.
 */
const STRATUM_TRANSPORT = /^(?:oci|oci-archive|docker-archive|docker-daemon):|^docker:\/\//;

// distribution/reference's grammar (ParseNormalizedNamed): lowercase path components, an
// optional domain with port, an optional tag and digest.
const DOMAIN_PART = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_PART}(?:\\.${DOMAIN_PART})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const REFERENCE = new RegExp(
  `^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
);

export function isValidReference(text: string): boolean {
  if (text === '' || !REFERENCE.test(text)) return false;
  const name = text.replace(/@.*$/, '').replace(/:[\w][\w.-]*$/, '');
  return name.length <= 255;
}

/** BuildKit's util/suggest.Search: the closest within 2 edits; an exact match suggests nothing. */
function closest(word: string, candidates: Iterable<string>): string {
  let best = '';
  let bestDistance = 3;
  for (const candidate of candidates) {
    if (candidate === word) return '';
    const distance = levenshtein(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

interface StageOutcome {
  /** Undefined when the base image's environment is unknown. */
  readonly env: Map<string, string> | undefined;
  readonly shellSet: boolean;
}

/** What dispatching each (reachable) stage reports: FROM arguments, then each instruction. */
function checkStages(
  parsed: ParseResult,
  options: CheckOptions,
  forInstruction: (instruction: Instruction) => Report,
): void {
  const platformArgs = options.platformArgs ?? new Map<string, string>();
  const buildArgs = options.buildArgs ?? new Map<string, string>();
  const globals = metaArgValues(parsed, platformArgs, buildArgs) ?? new Map(platformArgs);
  const declaredMeta = new Set(parsed.metaArgs.flatMap((arg) => arg.declarations.map((d) => d.name)));
  const fromKeys = new Set([...declaredMeta, ...globals.keys()]);
  const outcomes = new Map<number, StageOutcome>();
  const byName = new Map<string, number>();
  const lex = (word: string, env: ReadonlyMap<string, string>) =>
    lexWord(word, env, { escapeChar: parsed.escapeChar });

  for (const stage of parsed.stages) {
    const dispatched = options.stages === undefined || options.stages.has(stage.index);
    const report = forInstruction(stage.from);
    const image = lex(stage.from.image, globals);
    if (dispatched && image.ok) {
      for (const name of image.unmatched) {
        if (!fromKeys.has(name))
          report(RULES.UndefinedArgInFrom, stage.from.location, name, closest(name, fromKeys));
      }
    }
    if (dispatched && stage.from.platform !== undefined) {
      const platform = lex(stage.from.platform, globals);
      if (platform.ok) {
        for (const name of platform.unmatched) {
          if (!fromKeys.has(name))
            report(RULES.UndefinedArgInFrom, stage.from.location, name, closest(name, fromKeys));
        }
        if (
          platform.matched.size === 1 &&
          platform.unmatched.size === 0 &&
          platform.matched.has('TARGETPLATFORM') &&
          platform.value === globals.get('TARGETPLATFORM')
        ) {
          report(RULES.RedundantTargetPlatform, stage.from.location, stage.from.platform);
        }
        if (platform.matched.size === 0 && platform.unmatched.size === 0)
          checkConstPlatform(stage, platform.value, report);
      }
    }
    const imageName = image.ok ? image.value : stage.from.image;
    const baseIndex = byName.get(imageName.toLowerCase());
    let base: StageOutcome;
    if (baseIndex !== undefined) base = outcomes.get(baseIndex)!;
    else if (imageName.toLowerCase() === 'scratch') base = { env: new Map(), shellSet: false };
    else {
      const env = options.baseEnv?.(stage, imageName);
      base = { env: env === undefined ? undefined : new Map(env), shellSet: false };
    }
    const outcome = dispatchStage(stage, base, {
      globals,
      declaredMeta,
      buildArgs,
      options,
      forInstruction,
      lex,
      dispatched,
    });
    outcomes.set(stage.index, outcome);
    if (stage.name !== undefined) byName.set(stage.name, stage.index);
  }
}

function checkConstPlatform(stage: Stage, platform: string, report: Report): void {
  const parts = platform.split('/');
  if (parts.some((part) => part === '') || parts.length > 3) return;
  const knownArch = ['amd64', 'arm64', 'arm', '386', 'ppc64le', 's390x', 'riscv64', 'mips64le', 'loong64'];
  let os = parts[0]!.toLowerCase();
  let arch = parts[1]?.toLowerCase() ?? '';
  if (parts.length === 1 && knownArch.includes(os)) {
    arch = os;
    os = 'linux';
  }
  const name = stage.name ?? '';
  if (name.includes(os) || (arch !== '' && name.includes(arch))) return;
  report(RULES.FromPlatformFlagConstDisallowed, stage.from.location, platform);
}

interface DispatchContext {
  readonly globals: ReadonlyMap<string, string>;
  readonly declaredMeta: ReadonlySet<string>;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly options: CheckOptions;
  readonly forInstruction: (instruction: Instruction) => Report;
  readonly lex: (word: string, env: ReadonlyMap<string, string>) => ReturnType<typeof lexWord>;
  /** False for a stage the build does not reach: its environment is followed, nothing reported. */
  readonly dispatched: boolean;
}

const SECRET_WORDS =
  /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const ALLOWED_WORDS = /(?:_|^)(?:public|file|version)(?:_|$)/i;

function dispatchStage(stage: Stage, base: StageOutcome, ctx: DispatchContext): StageOutcome {
  const env = base.env === undefined ? undefined : new Map(base.env);
  if (env !== undefined && !env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  let shellSet = base.shellSet;
  let workdirSet = false;
  const declared = new Set<string>();
  const lastOnce = new Map<string, Instruction>();
  const quiet: Report = () => undefined;

  const undefinedVars = (
    instruction: Instruction,
    words: readonly (string | undefined)[],
    report: Report,
  ) => {
    for (const word of words) {
      if (word === undefined || word === '') continue;
      const lexed = ctx.lex(word, env ?? new Map());
      if (!lexed.ok || env === undefined) continue;
      for (const name of lexed.unmatched) {
        if (declared.has(name) || NON_ENV_ARGS.has(name)) continue;
        report(RULES.UndefinedVar, instruction.location, name, closest(name, env.keys()));
      }
    }
  };
  const expand = (word: string): string => {
    const lexed = ctx.lex(word, env ?? new Map());
    return lexed.ok ? lexed.value : word;
  };

  for (const instruction of stage.instructions) {
    const report = ctx.dispatched ? ctx.forInstruction(instruction) : quiet;
    switch (instruction.kind) {
      case 'arg':
        for (const declaration of instruction.declarations) {
          if (SECRET_WORDS.test(declaration.name) && !ALLOWED_WORDS.test(declaration.name))
            report(RULES.SecretsUsedInArgOrEnv, instruction.location, 'ARG', declaration.name);
          let value = ctx.buildArgs.get(declaration.name);
          if (value === undefined && declaration.defaultValue !== undefined) {
            undefinedVars(instruction, [declaration.defaultValue], report);
            value = expand(declaration.defaultValue);
          }
          if (value === undefined && ctx.declaredMeta.has(declaration.name))
            value = ctx.globals.get(declaration.name);
          if (value !== undefined && !NON_ENV_ARGS.has(declaration.name)) env?.set(declaration.name, value);
          declared.add(declaration.name);
        }
        break;
      case 'env': {
        undefinedVars(
          instruction,
          instruction.pairs.flatMap((pair) => [pair.key, pair.value]),
          report,
        );
        const values = instruction.pairs.map((pair) => [expand(pair.key), expand(pair.value)] as const);
        for (const pair of instruction.pairs) {
          if (pair.legacy) report(RULES.LegacyKeyValueFormat, instruction.location, instruction.keyword);
          if (SECRET_WORDS.test(pair.key) && !ALLOWED_WORDS.test(pair.key))
            report(RULES.SecretsUsedInArgOrEnv, instruction.location, 'ENV', pair.key);
        }
        for (const [key, value] of values) env?.set(key, value);
        break;
      }
      case 'label':
        undefinedVars(
          instruction,
          instruction.pairs.flatMap((pair) => [pair.key, pair.value]),
          report,
        );
        for (const pair of instruction.pairs)
          if (pair.legacy) report(RULES.LegacyKeyValueFormat, instruction.location, instruction.keyword);
        break;
      case 'copy':
      case 'add':
        undefinedVars(
          instruction,
          [
            instruction.chown,
            instruction.chmod,
            ...(instruction.kind === 'add' ? [instruction.checksum] : []),
            ...instruction.sources,
            instruction.destination,
          ],
          report,
        );
        if (instruction.kind === 'add' || instruction.from === undefined)
          checkIgnoredSources(instruction, ctx.options, expand, report);
        break;
      case 'workdir':
        undefinedVars(instruction, [instruction.path], report);
        if (!workdirSet && !expand(instruction.path).startsWith('/'))
          report(RULES.WorkdirRelativePath, instruction.location, expand(instruction.path));
        workdirSet = true;
        break;
      case 'user':
        undefinedVars(instruction, [instruction.user], report);
        break;
      case 'volume':
        undefinedVars(instruction, instruction.volumes, report);
        break;
      case 'stopsignal':
        undefinedVars(instruction, [instruction.signal], report);
        break;
      case 'expose':
        for (const word of instruction.ports) {
          const lexed = ctx.lex(word, env ?? new Map());
          for (const port of lexed.ok ? lexed.words : [word]) checkExposedPort(port, instruction, report);
        }
        break;
      case 'shell':
        shellSet = true;
        break;
      case 'cmd':
      case 'entrypoint':
      case 'healthcheck': {
        const previous = lastOnce.get(instruction.kind);
        if (previous !== undefined)
          report(RULES.MultipleInstructionsDisallowed, previous.location, instruction.keyword);
        lastOnce.set(instruction.kind, instruction);
        if (instruction.kind !== 'healthcheck' && instruction.form === 'shell' && !shellSet)
          report(RULES.JSONArgsRecommended, instruction.location, instruction.keyword);
        break;
      }
      case 'from':
      case 'maintainer':
      case 'onbuild':
      case 'run':
        break;
    }
  }
  return { env, shellSet };
}

/** EXPOSE `[ip:][hostPort:]port[/proto]` (convert_expose.go splitParts/splitProtoPort). */
function checkExposedPort(raw: string, instruction: Instruction, report: Report): void {
  const parts = raw.split(':');
  const ip = parts.length >= 3 ? parts.slice(0, parts.length - 2).join(':') : '';
  const hostPort = parts.length >= 2 ? parts[parts.length - 2]! : '';
  const containerPort = parts[parts.length - 1]!;
  const slash = containerPort.indexOf('/');
  const port = slash < 0 ? containerPort : containerPort.slice(0, slash);
  const proto = slash < 0 ? '' : containerPort.slice(slash + 1);
  // An invalid port or protocol is an error when the build runs, before these checks.
  if (port === '' || !['', 'tcp', 'udp', 'sctp'].includes(proto.toLowerCase())) return;
  if (proto !== proto.toLowerCase()) report(RULES.ExposeProtoCasing, instruction.location, raw);
  if (ip !== '' || hostPort !== '') report(RULES.ExposeInvalidFormat, instruction.location, raw);
}

/**
 * CopyIgnoredFile (validations.go validateCopySourcePath): only without `!` exceptions in the
 * .dockerignore, which make a static answer impossible; `.` and `/` only when a pattern
 * excludes everything.
 */
function checkIgnoredSources(
  instruction: Extract<Instruction, { kind: 'copy' | 'add' }>,
  options: CheckOptions,
  expand: (word: string) => string,
  report: Report,
): void {
  const ignore = options.ignore;
  if (ignore === undefined || ignore.patterns.some((pattern) => pattern.startsWith('!'))) return;
  // "." and "/" are the context itself: only a pattern that excludes every entry counts.
  const rootIgnored = ignore.patterns.some((pattern) => ['*', '**', '**/*'].includes(pattern));
  const verb = instruction.kind === 'add' ? 'Add' : 'Copy';
  for (const source of instruction.sources) {
    const expanded = expand(source);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(expanded) || /^[\w.-]+@[\w.-]+:/.test(expanded)) continue;
    const clean = cleanPath(expanded);
    const isRoot = clean === '.' || clean === '/';
    if (isRoot ? rootIgnored : ignore.matches(clean.replace(/^\/+/, '')))
      report(RULES.CopyIgnoredFile, instruction.location, verb, clean);
  }
}

/** Go's path.Clean. */
function cleanPath(path: string): string {
  const absolute = path.startsWith('/');
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!absolute) out.push('..');
    } else out.push(part);
  }
  const joined = out.join('/');
  if (absolute) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/**
 * The stages a build of `target` dispatches: the target and, recursively, the stages it starts
 * from or reads (`COPY --from`, `RUN --mount=from=`), named or by index.
 */
export function reachableStages(parsed: ParseResult, target: string | undefined): Set<number> {
  const byName = new Map<string, number>();
  for (const stage of parsed.stages) if (stage.name !== undefined) byName.set(stage.name, stage.index);
  const find = (ref: string): number | undefined => {
    const lower = ref.toLowerCase();
    if (byName.has(lower)) return byName.get(lower);
    return /^\d+$/.test(ref) && Number(ref) < parsed.stages.length ? Number(ref) : undefined;
  };
  const start = target === undefined ? parsed.stages.length - 1 : find(target);
  const seen = new Set<number>();
  const visit = (index: number | undefined): void => {
    if (index === undefined || seen.has(index)) return;
    seen.add(index);
    const stage = parsed.stages[index]!;
    const base = byName.get(stage.from.image.toLowerCase());
    if (base !== undefined && base < index) visit(base);
    for (const instruction of stage.instructions) {
      if (instruction.kind === 'copy' && instruction.from !== undefined) visit(find(instruction.from));
      if (instruction.kind === 'run')
        for (const mount of instruction.mounts)
          if ((mount.type === 'bind' || mount.type === 'cache') && mount.from !== undefined)
            visit(find(mount.from));
    }
  };
  visit(start);
  return seen;
}
