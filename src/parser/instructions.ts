/**
 * Stage two of the parse, after BuildKit's instructions.ParseInstruction: an AstNode becomes
 * a typed Instruction, with its flags checked against the instruction's own set and its
 * arguments checked (counts, HEALTHCHECK durations, ONBUILD nesting, stage names, mounts).
 * Arguments stay unexpanded.
 */
import { onbuildExpression } from './ast.js';
import { parseGoDuration } from './duration.js';
import { FlagError, parseFlags, type FlagSpec, type FlagValues } from './flags.js';
import { chompHeredoc, parseHeredocWord } from './heredoc.js';
import { MountError, parseMount } from './mount.js';
import { suggest } from './suggest.js';
import type {
  AstNode,
  CommandForm,
  Heredoc,
  InlineSource,
  Instruction,
  InstructionBase,
  KeyValue,
  MountSpec,
} from './types.js';

export const INSTRUCTION_NAMES = [
  'ADD',
  'ARG',
  'CMD',
  'COPY',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'FROM',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'RUN',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
] as const;

/** Which part of the instruction a problem is about, for its column. */
export type Where =
  { readonly at: 'keyword' } | { readonly at: 'rest' } | { readonly at: 'flag'; readonly index: number };

export class InstructionError extends Error {
  constructor(
    message: string,
    readonly where: Where = { at: 'keyword' },
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

const FLAGS: Readonly<Record<string, FlagSpec>> = {
  from: { platform: 'string' },
  run: { mount: 'strings', network: 'string', security: 'string' },
  copy: {
    from: 'string',
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    parents: 'bool',
    exclude: 'strings',
  },
  add: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    'keep-git-dir': 'bool',
    checksum: 'string',
    exclude: 'strings',
    unpack: 'bool',
  },
  healthcheck: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

function flagsFor(kind: string, node: AstNode): FlagValues {
  const spec = FLAGS[kind] ?? {};
  try {
    return parseFlags(kind.toUpperCase(), node.flags, spec);
  } catch (error) {
    if (error instanceof FlagError) {
      let message = error.message;
      // A flag that belongs to another instruction: say so, it is the likely mistake.
      const name = /^unknown flag: --([^ ]+)/.exec(message)?.[1];
      if (name !== undefined) {
        const owners = Object.entries(FLAGS)
          .filter(([other, s]) => other !== kind && Object.hasOwn(s, name))
          .map(([other]) => other.toUpperCase());
        if (owners.length > 0) message += `; --${name} belongs to ${owners.join(', ')}`;
      }
      throw new InstructionError(message, { at: 'flag', index: error.index }, error.suggestion);
    }
    throw error;
  }
}

function base(node: AstNode): InstructionBase {
  return {
    keyword: node.keyword,
    location: node.location,
    original: node.original,
    flags: node.flags,
    args: node.args,
    ...(node.comments === undefined ? {} : { comments: node.comments }),
  };
}

function shellDependent(node: AstNode): { form: CommandForm; command: readonly string[] } {
  if (node.json) return { form: 'exec', command: node.args };
  return { form: 'shell', command: node.args.length === 0 ? [] : [node.args.join(' ')] };
}

function pairs(node: AstNode, name: string): KeyValue[] {
  if (node.args.length === 0) throw new InstructionError(`${name} requires at least one argument`);
  const out: KeyValue[] = [];
  for (let i = 0; i < node.args.length; i += 3) {
    const key = node.args[i]!;
    if (key === '') throw new InstructionError(`${name} names can not be blank`, { at: 'rest' });
    out.push({ key, value: node.args[i + 1] ?? '', legacy: node.args[i + 2] === '' });
  }
  return out;
}

function exactlyOne(node: AstNode, name: string): string {
  if (node.args.length !== 1)
    throw new InstructionError(`${name} requires exactly one argument`, { at: 'rest' });
  return node.args[0]!;
}

function atLeastOne(node: AstNode, name: string): void {
  if (node.args.length === 0) throw new InstructionError(`${name} requires at least one argument`);
}

const validStageName = /^[a-z][a-z0-9\-_.]*$/;

function sourcesAndDest(
  node: AstNode,
  name: string,
  heredocs: readonly Heredoc[],
): { sources: string[]; inlineSources: InlineSource[]; destination: string } {
  if (node.args.length < 2) {
    throw new InstructionError(
      `${name} requires at least two arguments, but only one was provided. Destination could not be determined`,
      { at: 'rest' },
    );
  }
  const destination = node.args[node.args.length - 1]!;
  if (!node.json && safeHeredoc(destination) !== undefined) {
    throw new InstructionError(`${name} cannot accept a heredoc as a destination`, { at: 'rest' });
  }
  const byName = new Map(heredocs.map((h) => [h.name, h]));
  const sources: string[] = [];
  const inlineSources: InlineSource[] = [];
  for (const src of node.args.slice(0, -1)) {
    const header = node.json ? undefined : safeHeredoc(src);
    if (header === undefined) {
      sources.push(src);
      continue;
    }
    const body = byName.get(header.name);
    const content = body?.content ?? '';
    inlineSources.push({
      ...header,
      path: header.name,
      content: header.chomp ? chompHeredoc(content) : content,
    });
  }
  return { sources, inlineSources, destination };
}

function safeHeredoc(word: string): ReturnType<typeof parseHeredocWord> {
  try {
    return parseHeredocWord(word);
  } catch {
    return undefined;
  }
}

function duration(flags: FlagValues, name: string): number {
  const text = flags.strings.get(name);
  if (text === undefined || text === '') return 0;
  const ns = parseGoDuration(text);
  if (ns === undefined) throw new InstructionError(`invalid duration for --${name}: ${JSON.stringify(text)}`);
  if (ns === 0) return 0;
  // container.MinimumDuration
  if (ns < 1e6) throw new InstructionError(`Interval "${name}" cannot be less than 1ms`);
  return ns;
}

function chompAll(heredocs: readonly Heredoc[]): Heredoc[] {
  return heredocs.map((h) => (h.chomp ? { ...h, content: chompHeredoc(h.content) } : h));
}

/**
 * Converts one node. `heredocs` are the bodies read after the line (for ONBUILD they belong
 * to the outer node and are handed to the trigger).
 */
export function toInstruction(node: AstNode, heredocs: readonly Heredoc[] = node.heredocs): Instruction {
  const kind = node.keyword.toLowerCase();
  const b = base(node);
  switch (kind) {
    case 'from': {
      const flags = flagsFor(kind, node);
      const args = node.args;
      let stageName: string | undefined;
      if (args.length === 3 && args[1]!.toLowerCase() === 'as') {
        stageName = args[2]!.toLowerCase();
        if (!validStageName.test(stageName)) {
          throw new InstructionError(
            `invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`,
            { at: 'rest' },
          );
        }
      } else if (args.length !== 1) {
        throw new InstructionError('FROM requires either one or three arguments', { at: 'rest' });
      }
      const platform = flags.strings.get('platform');
      return {
        ...b,
        kind,
        image: args[0]!,
        ...(stageName === undefined ? {} : { stageName }),
        ...(platform === undefined ? {} : { platform }),
      };
    }
    case 'run': {
      const flags = flagsFor(kind, node);
      const mounts: MountSpec[] = [];
      for (const text of flags.lists.get('mount') ?? []) {
        try {
          mounts.push(parseMount(text));
        } catch (error) {
          if (!(error instanceof MountError)) throw error;
          const index = node.flags.findIndex((f) => f === `--mount=${text}`);
          throw new InstructionError(
            `--mount=${text}: ${error.message}`,
            { at: 'flag', index },
            error.suggestion,
          );
        }
      }
      const network = flags.strings.get('network') ?? 'default';
      if (network !== 'default' && network !== 'none' && network !== 'host') {
        throw new InstructionError(
          `unsupported network mode ${JSON.stringify(network)} (valid: default, none, host)`,
          {
            at: 'flag',
            index: node.flags.findIndex((f) => f.startsWith('--network')),
          },
        );
      }
      const security = flags.strings.get('security') ?? 'sandbox';
      if (security !== 'sandbox' && security !== 'insecure') {
        throw new InstructionError(
          `unsupported security mode ${JSON.stringify(security)} (valid: sandbox, insecure)`,
          {
            at: 'flag',
            index: node.flags.findIndex((f) => f.startsWith('--security')),
          },
        );
      }
      const cmd = shellDependent(node);
      if (cmd.form === 'shell' && cmd.command.length === 0) {
        throw new InstructionError('RUN requires at least one argument');
      }
      return { ...b, kind, ...cmd, mounts, network, security, heredocs: chompAll(heredocs) };
    }
    case 'cmd':
    case 'entrypoint':
      flagsFor(kind, node);
      return { ...b, kind, ...shellDependent(node) };
    case 'shell': {
      flagsFor(kind, node);
      if (node.args.length === 0) throw new InstructionError('SHELL requires at least one argument');
      if (!node.json) {
        throw new InstructionError(
          `SHELL requires the arguments to be in JSON form`,
          { at: 'rest' },
          `SHELL ["/bin/sh", "-c"]`,
        );
      }
      return { ...b, kind, shell: node.args };
    }
    case 'env':
    case 'label':
      flagsFor(kind, node);
      return { ...b, kind, pairs: pairs(node, kind.toUpperCase()) };
    case 'arg': {
      flagsFor(kind, node);
      atLeastOne(node, 'ARG');
      const declarations = node.args.map((arg) => {
        const eq = arg.indexOf('=');
        if (eq === -1) return { name: arg };
        if (eq === 0) throw new InstructionError('ARG names can not be blank', { at: 'rest' });
        return { name: arg.slice(0, eq), defaultValue: arg.slice(eq + 1) };
      });
      return { ...b, kind, declarations };
    }
    case 'expose':
      flagsFor(kind, node);
      atLeastOne(node, 'EXPOSE');
      return { ...b, kind, ports: node.args };
    case 'volume': {
      flagsFor(kind, node);
      atLeastOne(node, 'VOLUME');
      const volumes = node.args.map((v) => v.trim());
      if (volumes.includes(''))
        throw new InstructionError('VOLUME specified can not be an empty string', { at: 'rest' });
      return { ...b, kind, form: node.json ? 'exec' : 'shell', volumes };
    }
    case 'user':
      flagsFor(kind, node);
      return { ...b, kind, user: exactlyOne(node, 'USER') };
    case 'workdir':
      flagsFor(kind, node);
      return { ...b, kind, path: exactlyOne(node, 'WORKDIR') };
    case 'stopsignal':
      flagsFor(kind, node);
      return { ...b, kind, signal: exactlyOne(node, 'STOPSIGNAL') };
    case 'maintainer':
      flagsFor(kind, node);
      return { ...b, kind, maintainer: exactlyOne(node, 'MAINTAINER') };
    case 'copy': {
      const flags = flagsFor(kind, node);
      const from = flags.strings.get('from');
      const chown = flags.strings.get('chown');
      const chmod = flags.strings.get('chmod');
      return {
        ...b,
        kind,
        form: node.json ? 'exec' : 'shell',
        ...sourcesAndDest(node, 'COPY', heredocs),
        ...(from === undefined ? {} : { from }),
        ...(chown === undefined ? {} : { chown }),
        ...(chmod === undefined ? {} : { chmod }),
        link: flags.bools.get('link') ?? false,
        parents: flags.bools.get('parents') ?? false,
        exclude: flags.lists.get('exclude') ?? [],
      };
    }
    case 'add': {
      const flags = flagsFor(kind, node);
      const chown = flags.strings.get('chown');
      const chmod = flags.strings.get('chmod');
      const checksum = flags.strings.get('checksum');
      const unpack = flags.bools.get('unpack');
      return {
        ...b,
        kind,
        form: node.json ? 'exec' : 'shell',
        ...sourcesAndDest(node, 'ADD', heredocs),
        ...(chown === undefined ? {} : { chown }),
        ...(chmod === undefined ? {} : { chmod }),
        link: flags.bools.get('link') ?? false,
        keepGitDir: flags.bools.get('keep-git-dir') ?? false,
        ...(checksum === undefined ? {} : { checksum }),
        ...(unpack === undefined ? {} : { unpack }),
        exclude: flags.lists.get('exclude') ?? [],
      };
    }
    case 'healthcheck':
      return healthcheck(node, b);
    case 'onbuild': {
      flagsFor(kind, node);
      const child = node.child;
      if (child === undefined) throw new InstructionError('ONBUILD requires at least one argument');
      const trigger = child.keyword.toUpperCase();
      if (trigger === 'ONBUILD') {
        throw new InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", { at: 'rest' });
      }
      if (trigger === 'MAINTAINER' || trigger === 'FROM') {
        throw new InstructionError(`${trigger} isn't allowed as an ONBUILD trigger`, { at: 'rest' });
      }
      let inner: Instruction;
      try {
        inner = toInstruction(child, heredocs);
      } catch (error) {
        // Errors of the trigger point into the trigger, not at the ONBUILD keyword.
        if (error instanceof InstructionError && error.where.at === 'keyword') {
          throw new InstructionError(error.message, { at: 'rest' }, error.suggestion);
        }
        throw error;
      }
      return { ...b, kind, trigger: inner, expression: onbuildExpression(node.original) };
    }
    default: {
      const guess = suggest(node.keyword.toUpperCase(), INSTRUCTION_NAMES);
      throw new InstructionError(
        `unknown instruction ${JSON.stringify(node.keyword)}` +
          (guess === undefined ? '' : ` (did you mean ${JSON.stringify(guess)}?)`),
        { at: 'keyword' },
        guess,
      );
    }
  }
}

function healthcheck(node: AstNode, b: InstructionBase): Instruction {
  if (node.args.length === 0) throw new InstructionError('HEALTHCHECK requires at least one argument');
  const type = node.args[0]!.toUpperCase();
  const rest = node.args.slice(1);
  const none = { interval: 0, timeout: 0, startPeriod: 0, startInterval: 0, retries: 0 };
  if (type === 'NONE') {
    if (rest.length !== 0) throw new InstructionError('HEALTHCHECK NONE takes no arguments', { at: 'rest' });
    if (node.flags.length > 0) {
      throw new InstructionError('HEALTHCHECK NONE takes no flags', { at: 'flag', index: 0 });
    }
    return { ...b, kind: 'healthcheck', test: ['NONE'], ...none };
  }
  const flags = flagsFor('healthcheck', node);
  if (type !== 'CMD') {
    throw new InstructionError(
      `Unknown type ${JSON.stringify(type)} in HEALTHCHECK (try CMD)`,
      { at: 'rest' },
      'CMD',
    );
  }
  const command = node.json ? rest : rest.length === 0 ? [] : [rest.join(' ')];
  if (command.length === 0)
    throw new InstructionError('Missing command after HEALTHCHECK CMD', { at: 'rest' });
  const test = node.json ? ['CMD', ...command] : ['CMD-SHELL', ...command];
  let retries = 0;
  const retriesText = flags.strings.get('retries');
  if (retriesText !== undefined && retriesText !== '') {
    if (!/^[+-]?[0-9]+$/.test(retriesText) || Math.abs(Number(retriesText)) > 2 ** 31 - 1) {
      throw new InstructionError(`invalid value for --retries: ${JSON.stringify(retriesText)}`);
    }
    retries = Number(retriesText);
    if (retries < 0) throw new InstructionError(`--retries cannot be negative (${retries})`);
  }
  return {
    ...b,
    kind: 'healthcheck',
    test,
    interval: duration(flags, 'interval'),
    timeout: duration(flags, 'timeout'),
    startPeriod: duration(flags, 'start-period'),
    startInterval: duration(flags, 'start-interval'),
    retries,
  };
}
