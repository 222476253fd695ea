/**
 * Go's time.ParseDuration, which BuildKit uses for HEALTHCHECK's --interval, --timeout,
 * --start-period and --start-interval: a sequence of decimal numbers with units
 * ns, us (µs, μs), ms, s, m, h; an optional sign; "0" alone is allowed.
 */

const units: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Nanoseconds, or undefined if the text is not a Go duration. */
export function parseGoDuration(text: string): number | undefined {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s.startsWith('-')) sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  const part = /^([0-9]*)(?:\.([0-9]*))?([^0-9.]+)/;
  while (s !== '') {
    const m = part.exec(s);
    if (m === null) return undefined;
    const whole = m[1] ?? '';
    const frac = m[2];
    if (whole === '' && (frac === undefined || frac === '')) return undefined;
    // µ (U+00B5) and μ (U+03BC) escaped: the CLI bundle is ASCII (scripts/bundle.js).
    const unitName = /^(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/.exec(m[3] ?? '')?.[1];
    if (unitName === undefined) return undefined;
    const unit = units[unitName]!;
    const value = Number(`${whole === '' ? '0' : whole}.${frac ?? ''}0`);
    total += value * unit;
    s = s.slice(whole.length + (frac === undefined ? 0 : frac.length + 1) + unitName.length);
  }
  if (total > 2 ** 63) return undefined;
  return sign * Math.round(total);
}

/** Formats nanoseconds the way Go's Duration.String does for whole units (1ms, 30s, 1m30s). */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return '0s';
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${ns / 1e3}µs`;
  if (ns < 1e9) return `${ns / 1e6}ms`;
  let rest = ns / 1e9;
  let out = '';
  const h = Math.floor(rest / 3600);
  if (h > 0) out += `${h}h`;
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  if (h > 0 || m > 0) out += `${m}m`;
  rest -= m * 60;
  return `${out}${Number(rest.toFixed(9))}s`;
}
