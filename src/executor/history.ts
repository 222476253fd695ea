import type { HealthConfig } from '../oci/types.js';

/**
 * `created_by` strings in BuildKit's form (dockerfile2llb's commitToHistory): the instruction in
 * upper case with its expanded arguments, and ` # buildkit` after instructions that change the
 * filesystem. Go's `%q` of a string slice prints `["a" "b"]`; `%v` prints `[a b]`.
 */
export function goQuotedList(values: readonly string[]): string {
  return `[${values.map((value) => JSON.stringify(value)).join(' ')}]`;
}

export function goPlainList(values: readonly string[]): string {
  return `[${values.join(' ')}]`;
}

/** `RUN |2 A=1 B=2 /bin/sh -c make`: the ARGs in scope prefix the command, as BuildKit writes. */
export function runCreatedBy(argv: readonly string[], args: readonly (readonly [string, string])[]): string {
  const prefix = args.length > 0 ? [`|${args.length}`, ...args.map(([key, value]) => `${key}=${value}`)] : [];
  return `RUN ${[...prefix, ...argv].join(' ')} # buildkit`;
}

export function withLayerMarker(text: string): string {
  return `${text} # buildkit`;
}

/**
 * HEALTHCHECK's `created_by`, as both Docker builders write it: Go's `%v` of the config's
 * `*HealthConfig`, `HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "5s" "3s" "0s" '\x02'}` (the test
 * `%q`-quoted, durations as Go prints them, retries as a Go rune literal). Docker 20.10's struct
 * has no StartInterval; newer ones print it after StartPeriod, so it appears only when set.
 */
export function healthcheckCreatedBy(health: HealthConfig): string {
  const durations = [health.Interval, health.Timeout, health.StartPeriod];
  if (health.StartInterval !== undefined && health.StartInterval !== 0) durations.push(health.StartInterval);
  const fields = [
    goQuotedList(health.Test ?? []),
    ...durations.map((ns) => JSON.stringify(goDuration(ns ?? 0))),
    goRune(health.Retries ?? 0),
  ];
  return `HEALTHCHECK &{${fields.join(' ')}}`;
}

/** Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`, `1.5µs`, `7ns`. */
export function goDuration(nanoseconds: number): string {
  if (nanoseconds === 0) return '0s';
  const sign = nanoseconds < 0 ? '-' : '';
  let rest = Math.abs(nanoseconds);
  if (rest < 1e3) return `${sign}${rest}ns`;
  if (rest < 1e6) return `${sign}${decimal(rest, 1e3, 3)}µs`;
  if (rest < 1e9) return `${sign}${decimal(rest, 1e6, 6)}ms`;
  const hours = Math.floor(rest / 3.6e12);
  rest -= hours * 3.6e12;
  const minutes = Math.floor(rest / 6e10);
  rest -= minutes * 6e10;
  const head = hours > 0 ? `${hours}h${minutes}m` : minutes > 0 ? `${minutes}m` : '';
  return `${sign}${head}${decimal(rest, 1e9, 9)}s`;
}

/** `value / unit` with the fraction's trailing zeros dropped (`digits` = log10(unit)). */
function decimal(value: number, unit: number, digits: number): string {
  const whole = Math.floor(value / unit);
  const fraction = String(value - whole * unit)
    .padStart(digits, '0')
    .replace(/0+$/, '');
  return fraction === '' ? String(whole) : `${whole}.${fraction}`;
}

const RUNE_ESCAPES: Readonly<Record<number, string>> = {
  7: '\\a',
  8: '\\b',
  9: '\\t',
  10: '\\n',
  11: '\\v',
  12: '\\f',
  13: '\\r',
  39: "\\'",
  92: '\\\\',
};

/** Go's `%q` of an integer: a quoted rune literal (`'\x00'`, `'\n'`, `'A'`). */
export function goRune(code: number): string {
  const escape = RUNE_ESCAPES[code];
  if (escape !== undefined) return `'${escape}'`;
  if (code < 0x20 || code === 0x7f) return `'\\x${code.toString(16).padStart(2, '0')}'`;
  if (code < 0x7f) return `'${String.fromCodePoint(code)}'`;
  if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return "'\uFFFD'";
  const char = String.fromCodePoint(code);
  if (/^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(char)) return `'${char}'`;
  return code > 0xffff
    ? `'\\U${code.toString(16).padStart(8, '0')}'`
    : `'\\u${code.toString(16).padStart(4, '0')}'`;
}
