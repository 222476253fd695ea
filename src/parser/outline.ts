/**
 * `--call=targets` and `--call=outline` as data, in the shapes of BuildKit's subrequests
 * (frontend/subrequests/targets, frontend/subrequests/outline) as dockerfile2llb fills them:
 * ListTargets lists every stage; Dockerfile2Outline lists what building one target takes (the
 * build args it uses, secrets, SSH agents). Descriptions are the comment right above FROM or
 * ARG that starts with the stage's or argument's name (`# build compiles the app`).
 */
import { reachableStages } from './checks.js';
import { lexWord } from './shell-lex.js';
import type { Instruction, ParseResult, SourceRange, Stage } from './types.js';

/** BuildKit's pb.Location without a source index (outline and targets leave it at 0). */
export interface SourceLocation {
  readonly ranges: readonly {
    readonly start: { readonly line: number };
    readonly end: { readonly line: number };
  }[];
}

export interface TargetInfo {
  readonly name?: string;
  readonly default?: boolean;
  readonly description?: string;
  readonly base?: string;
  readonly platform?: string;
  readonly location?: SourceLocation;
}

export interface OutlineArg {
  readonly name: string;
  readonly description?: string;
  readonly value?: string;
  readonly location?: SourceLocation;
}

export interface OutlineNeed {
  readonly name: string;
  readonly required?: boolean;
  readonly location?: SourceLocation;
}

export interface Outline {
  readonly name?: string;
  readonly description?: string;
  readonly args?: readonly OutlineArg[];
  readonly secrets?: readonly OutlineNeed[];
  readonly ssh?: readonly OutlineNeed[];
}

function locationOf(range: SourceRange): SourceLocation {
  return { ranges: [{ start: { line: range.line }, end: { line: range.endLine } }] };
}

/** instructions/parse.go getDocComment: the first comment line starting with `NAME `. */
export function docComment(comments: readonly string[] | undefined, name: string | undefined): string {
  if (name === undefined || name === '') return '';
  for (const line of comments ?? []) if (line.startsWith(`${name} `)) return line.slice(name.length + 1);
  return '';
}

/** ListTargets: every stage, the last one the default. */
export function listTargets(parsed: ParseResult): TargetInfo[] {
  return parsed.stages.map((stage, index) => {
    const description = docComment(stage.from.comments, stage.name);
    return {
      ...(stage.name === undefined ? {} : { name: stage.name }),
      ...(index === parsed.stages.length - 1 ? { default: true } : {}),
      ...(description === '' ? {} : { description }),
      ...(stage.from.image === '' ? {} : { base: stage.from.image }),
      ...(stage.from.platform === undefined ? {} : { platform: stage.from.platform }),
      location: locationOf(stage.from.location),
    };
  });
}

interface ArgRecord {
  readonly arg: OutlineArg;
  readonly line: number;
  /** Meta ARGs its default refers to: used whenever it is. */
  readonly deps: ReadonlySet<string>;
}

/**
 * Dockerfile2Outline for `target` (default: the last stage). `buildArgs` are the values given
 * with --build-arg; `platformArgs` the predefined platform ARGs.
 */
export function outlineTarget(
  parsed: ParseResult,
  options: {
    readonly target?: string;
    readonly buildArgs?: ReadonlyMap<string, string>;
    readonly platformArgs?: ReadonlyMap<string, string>;
  } = {},
): Outline {
  const buildArgs = options.buildArgs ?? new Map<string, string>();
  const lex = (word: string, env: ReadonlyMap<string, string>) =>
    lexWord(word, env, { escapeChar: parsed.escapeChar });
  const reachable = reachableStages(parsed, options.target);
  const globals = new Map(options.platformArgs ?? []);
  const meta = new Map<string, ArgRecord>();
  for (const instruction of parsed.metaArgs) {
    for (const declaration of instruction.declarations) {
      let value = buildArgs.get(declaration.name);
      let deps = new Set<string>();
      if (declaration.defaultValue !== undefined) {
        const lexed = lex(declaration.defaultValue, globals);
        if (lexed.ok) {
          value ??= lexed.value;
          deps = new Set(lexed.matched);
        }
      }
      if (value !== undefined) globals.set(declaration.name, value);
      const description = docComment(instruction.comments, declaration.name);
      meta.set(declaration.name, {
        arg: {
          name: declaration.name,
          ...(description === '' ? {} : { description }),
          ...(value === undefined || value === '' ? {} : { value }),
          location: locationOf(instruction.location),
        },
        line: instruction.location.line,
        deps,
      });
    }
  }

  const args = new Map<string, ArgRecord>();
  const usedMeta = new Set<string>();
  const secrets = new Map<string, { need: OutlineNeed; line: number }>();
  const ssh = new Map<string, { need: OutlineNeed; line: number }>();
  const ordered = [...reachable].sort((a, b) => b - a);
  for (const index of ordered) {
    const stage = parsed.stages[index]!;
    for (const word of [stage.from.image, stage.from.platform ?? '']) {
      const lexed = lex(word, globals);
      if (lexed.ok) for (const name of lexed.matched) usedMeta.add(name);
    }
    collectStage(stage, { args, usedMeta, secrets, ssh, buildArgs, meta, lex });
  }
  const markUsed = (name: string): void => {
    const record = meta.get(name);
    if (record === undefined || args.has(name)) return;
    args.set(name, record);
    for (const dep of record.deps) markUsed(dep);
  };
  for (const name of usedMeta) markUsed(name);

  const target = parsed.stages[[...reachable].sort((a, b) => b - a)[0] ?? parsed.stages.length - 1];
  const byLine = <T extends { line: number }>(list: Iterable<T>): T[] =>
    [...list].sort((a, b) => a.line - b.line);
  const name = target?.name;
  const description = docComment(target?.from.comments, name);
  const argList = byLine(args.values()).map((record) => record.arg);
  const secretList = byLine(secrets.values()).map((entry) => entry.need);
  const sshList = byLine(ssh.values()).map((entry) => entry.need);
  return {
    ...(name === undefined ? {} : { name }),
    ...(description === '' ? {} : { description }),
    ...(argList.length === 0 ? {} : { args: argList }),
    ...(secretList.length === 0 ? {} : { secrets: secretList }),
    ...(sshList.length === 0 ? {} : { ssh: sshList }),
  };
}

function collectStage(
  stage: Stage,
  into: {
    readonly args: Map<string, ArgRecord>;
    readonly usedMeta: Set<string>;
    readonly secrets: Map<string, { need: OutlineNeed; line: number }>;
    readonly ssh: Map<string, { need: OutlineNeed; line: number }>;
    readonly buildArgs: ReadonlyMap<string, string>;
    readonly meta: ReadonlyMap<string, ArgRecord>;
    readonly lex: (word: string, env: ReadonlyMap<string, string>) => ReturnType<typeof lexWord>;
  },
): void {
  const env = new Map<string, string>();
  const visit = (instruction: Instruction): void => {
    if (instruction.kind === 'arg') {
      for (const declaration of instruction.declarations) {
        let value = into.buildArgs.get(declaration.name);
        if (value === undefined && declaration.defaultValue !== undefined) {
          const lexed = into.lex(declaration.defaultValue, env);
          value = lexed.ok ? lexed.value : declaration.defaultValue;
        }
        if (
          value === undefined &&
          declaration.defaultValue === undefined &&
          into.meta.has(declaration.name)
        ) {
          // Inherited from a meta ARG: BuildKit lists the meta ARG, not this line.
          into.usedMeta.add(declaration.name);
          continue;
        }
        if (value !== undefined) env.set(declaration.name, value);
        if (into.args.has(declaration.name)) continue;
        const description = docComment(instruction.comments, declaration.name);
        into.args.set(declaration.name, {
          arg: {
            name: declaration.name,
            ...(description === '' ? {} : { description }),
            ...(value === undefined || value === '' ? {} : { value }),
            location: locationOf(instruction.location),
          },
          line: instruction.location.line,
          deps: new Set(),
        });
      }
    }
    if (instruction.kind === 'env') for (const pair of instruction.pairs) env.set(pair.key, pair.value);
    if (instruction.kind !== 'run') return;
    for (const mount of instruction.mounts) {
      if (mount.type !== 'secret' && mount.type !== 'ssh') continue;
      const id =
        mount.id ??
        (mount.type === 'ssh'
          ? 'default'
          : ((mount.target ?? mount.env ?? '').split('/').filter(Boolean).pop() ?? ''));
      const list = mount.type === 'secret' ? into.secrets : into.ssh;
      if (id === '' || list.has(id)) continue;
      list.set(id, {
        need: {
          name: id,
          ...(mount.required ? { required: true } : {}),
          location: locationOf(instruction.location),
        },
        line: instruction.location.line,
      });
    }
  };
  for (const instruction of stage.instructions) visit(instruction);
}
