import { StratumError } from '../../errors.js';

/**
 * `--chmod` values. Octal (`755`, `0644`, `4755`) as every BuildKit version supports, and
 * symbolic (`u+x`, `go-w`, `a=rX,u+w`) as BuildKit supports since Dockerfile 1.14: symbolic
 * clauses apply to each entry's own source mode, and `X` sets execute only on directories or on
 * entries that already have an execute bit. An octal value replaces the permission bits of files
 * and directories alike (BuildKit does the same: `--chmod=644` on a directory source makes its
 * subdirectories 0644).
 */
export type ChmodSpec =
  | { readonly kind: 'octal'; readonly mode: number }
  | { readonly kind: 'symbolic'; readonly text: string; readonly clauses: readonly SymbolicClause[] };

export interface SymbolicClause {
  /** Bits of the who-set: u=0o4700 (with setuid), g=0o2070 (with setgid), o=0o1007 (with sticky). */
  readonly who: number;
  readonly actions: readonly { readonly op: '+' | '-' | '='; readonly perms: string }[];
}

const WHO: Record<string, number> = { u: 0o4700, g: 0o2070, o: 0o1007, a: 0o7777 };

export function parseChmod(value: number | string, where = '--chmod'): ChmodSpec {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 0o7777) {
      throw new StratumError('BUILD_FAILED', `${where}: invalid mode ${value}`);
    }
    return { kind: 'octal', mode: value };
  }
  if (/^[0-7]{1,4}$/.test(value)) return { kind: 'octal', mode: parseInt(value, 8) };
  const clauses: SymbolicClause[] = [];
  for (const part of value.split(',')) {
    const match = /^([ugoa]*)((?:[-+=][rwxXst]*)+)$/.exec(part);
    if (match === null) {
      throw new StratumError(
        'BUILD_FAILED',
        `${where}=${value}: invalid mode (use octal such as 0755, or symbolic such as u+x)`,
      );
    }
    const whoText = match[1] === '' ? 'a' : match[1]!;
    let who = 0;
    for (const c of whoText) who |= WHO[c]!;
    const actions = [...match[2]!.matchAll(/([-+=])([rwxXst]*)/g)].map((m) => ({
      op: m[1] as '+' | '-' | '=',
      perms: m[2]!,
    }));
    clauses.push({ who, actions });
  }
  return { kind: 'symbolic', text: value, clauses };
}

function permBits(perms: string, who: number, current: number, isDir: boolean): number {
  let bits = 0;
  for (const p of perms) {
    if (p === 'r') bits |= 0o444;
    else if (p === 'w') bits |= 0o222;
    else if (p === 'x') bits |= 0o111;
    else if (p === 'X') {
      if (isDir || (current & 0o111) !== 0) bits |= 0o111;
    } else if (p === 's') bits |= 0o6000;
    else bits |= 0o1000; // 't'
  }
  return bits & who;
}

/** The permission bits an entry ends with, given its source mode. */
export function applyChmod(spec: ChmodSpec, sourceMode: number, isDir: boolean): number {
  if (spec.kind === 'octal') return spec.mode;
  let mode = sourceMode & 0o7777;
  for (const clause of spec.clauses) {
    for (const action of clause.actions) {
      const bits = permBits(action.perms, clause.who, mode, isDir);
      if (action.op === '+') mode |= bits;
      else if (action.op === '-') mode &= ~bits;
      else mode = (mode & ~clause.who) | bits;
    }
  }
  return mode & 0o7777;
}

/** A stable text form of the spec for cache keys. */
export function chmodText(spec: ChmodSpec): string {
  return spec.kind === 'octal' ? spec.mode.toString(8).padStart(4, '0') : spec.text;
}
