/**
 * Builder flags (`--name=value`) as BuildKit's BFlags checks them: each instruction declares
 * the flags it takes; an undeclared flag is an error that lists the valid ones (with a
 * "did you mean"); a repeated flag is an error except for repeatable ones (--mount,
 * --exclude); booleans take no value, `=true` or `=false`.
 */
import { suggest } from './suggest.js';

export type FlagSpec = Readonly<Record<string, 'string' | 'strings' | 'bool'>>;

export interface FlagValues {
  readonly strings: ReadonlyMap<string, string>;
  readonly lists: ReadonlyMap<string, readonly string[]>;
  readonly bools: ReadonlyMap<string, boolean>;
}

export class FlagError extends Error {
  constructor(
    message: string,
    /** Index of the offending flag in the flag list. */
    readonly index: number,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

export function parseFlags(instruction: string, flags: readonly string[], spec: FlagSpec): FlagValues {
  const strings = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const bools = new Map<string, boolean>();
  const used = new Set<string>();
  const names = Object.keys(spec);
  flags.forEach((flag, index) => {
    if (!flag.startsWith('--')) throw new FlagError(`arg should start with -- : ${flag}`, index);
    const body = flag.slice(2);
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const value = eq === -1 ? undefined : body.slice(eq + 1);
    const type = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (type === undefined) {
      const guess = suggest(name, names, true);
      const valid =
        names.length === 0
          ? `${instruction} takes no flags`
          : `valid flags for ${instruction}: ${names.map((n) => `--${n}`).join(', ')}`;
      throw new FlagError(
        `unknown flag: --${name} (${valid})`,
        index,
        guess === undefined ? undefined : `did you mean --${guess}?`,
      );
    }
    if (used.has(name) && type !== 'strings')
      throw new FlagError(`duplicate flag specified: --${name}`, index);
    used.add(name);
    switch (type) {
      case 'bool': {
        if (value === '') throw new FlagError(`missing a value on flag: --${name}`, index);
        const lower = value?.toLowerCase();
        if (lower === undefined || lower === 'true') bools.set(name, true);
        else if (lower === 'false') bools.set(name, false);
        else throw new FlagError(`expecting boolean value for flag --${name}, not: ${value}`, index);
        break;
      }
      case 'string':
        if (value === undefined) throw new FlagError(`missing a value on flag: --${name}`, index);
        strings.set(name, value);
        break;
      case 'strings': {
        if (value === undefined) throw new FlagError(`missing a value on flag: --${name}`, index);
        const list = lists.get(name) ?? [];
        list.push(value);
        lists.set(name, list);
        break;
      }
    }
  });
  return { strings, lists, bools };
}
