/**
 * Printing checks, targets and outlines as buildx prints them (commands/build.go printResult,
 * printWarnings; BuildKit's subrequests PrintTo / PrintTargets / PrintOutline and
 * solver/errdefs Source.Print), and their `--format json` as the subrequest's result.json
 * (Go's json.MarshalIndent: two spaces, `<`, `>`, `&` escaped).
 */
import type { CheckWarning } from './checks.js';
import type { Outline, TargetInfo } from './outline.js';

/** Go's encoding/json with MarshalIndent(v, "", "  "). */
export function goJson(value: unknown): string {
  return JSON.stringify(value, null, 2)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** text/tabwriter with minwidth 0 and the given padding: tab-ended cells padded to their column. */
function tabulate(lines: readonly string[], padding: number): string {
  const rows = lines.map((line) => line.split('\t'));
  const widths: number[] = [];
  for (const row of rows)
    row.slice(0, -1).forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, Array.from(cell).length + padding);
    });
  return rows
    .map((row) =>
      row
        .map((cell, column) => (column < row.length - 1 ? cell.padEnd(widths[column]!, ' ') : cell))
        .join(''),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** errdefs.Source.Print: the file name and line, then the lines around the range, `>>>` on it. */
export function sourceExcerpt(file: string, source: string, ranges: CheckWarning['ranges']): string {
  if (ranges.length === 0) return '';
  const lines = source.split('\n');
  let start = Math.min(...ranges.map((range) => range.start));
  let end = Math.max(...ranges.map((range) => Math.max(range.start, range.end)));
  if (start > lines.length || start < 1) return '';
  end = Math.min(end, lines.length);
  const pad = end === start ? 4 : 2;
  const firstLine = start;
  for (let p = 0; p < pad;) {
    if (start > 1) {
      start--;
      p++;
    }
    if (end !== lines.length) {
      end++;
      p++;
    }
    p++;
  }
  const inRange = (line: number): boolean =>
    ranges.some((range) => range.start <= line && Math.max(range.start, range.end) >= line);
  let out = `${file}:${firstLine}\n--------------------\n`;
  for (let line = start; line <= end; line++) {
    out += ` ${String(line).padStart(3)} | ${inRange(line) ? '>>>' : '   '} ${lines[line - 1]}\n`;
  }
  return `${out}--------------------\n`;
}

/** Sorted by first line, as LintResults.PrintTo sorts them (stable for equal lines). */
function byLine(warnings: readonly CheckWarning[]): CheckWarning[] {
  return [...warnings].sort((a, b) => (a.ranges[0]?.start ?? 0) - (b.ranges[0]?.start ?? 0));
}

/** `--check` output: the count, then each warning with its rule, URL, message and lines. */
export function formatCheckResult(warnings: readonly CheckWarning[], file: string, source: string): string {
  if (warnings.length === 0) return 'Check complete, no warnings found.\n';
  let out = `Check complete, ${warnings.length === 1 ? '1 warning has' : `${warnings.length} warnings have`} been found!\n`;
  for (const warning of byLine(warnings)) {
    out += `\nWARNING: ${warning.rule}${warning.url === undefined ? '' : ` - ${warning.url}`}\n${warning.message}\n`;
    out += sourceExcerpt(file, source, warning.ranges);
  }
  return out;
}

function pbLocation(ranges: CheckWarning['ranges']): unknown {
  return { ranges: ranges.map((range) => ({ start: { line: range.start }, end: { line: range.end } })) };
}

/** `--check --format json`: BuildKit's LintResults. */
export function checkResultJson(warnings: readonly CheckWarning[], file: string, source: string): string {
  return goJson({
    warnings: warnings.map((warning) => ({
      ruleName: warning.rule,
      description: warning.description,
      ...(warning.url === undefined ? {} : { url: warning.url }),
      detail: warning.message,
      location: pbLocation(warning.ranges),
    })),
    sources: [{ filename: file, data: Buffer.from(source).toString('base64'), language: 'Dockerfile' }],
  });
}

/** The short form a normal build shows (linter.LintFormatShort): `Rule: message (line N)`. */
export function shortWarning(warning: CheckWarning): string {
  const line = warning.ranges[0]?.start ?? 0;
  return `${warning.rule}: ${warning.message}${line > 0 ? ` (line ${line})` : ''}`;
}

/** buildx's summary after a build (printWarnings, without the `docker --debug` hint). */
export function formatWarningSummary(warnings: readonly string[]): string {
  if (warnings.length === 0) return '';
  const count = warnings.length === 1 ? '1 warning found' : `${warnings.length} warnings found`;
  return `\n ${count}:\n${warnings.map((warning) => ` - ${warning}\n`).join('')}`;
}

/** `--call=targets`: PrintTargets. */
export function formatTargets(targets: readonly TargetInfo[]): string {
  const lines = ['TARGET\tDESCRIPTION'];
  for (const target of targets) {
    let name = target.name ?? '';
    if (name === '' && target.default === true) name = '(default)';
    else if (target.default === true) name = `${name} (default)`;
    lines.push(`${name}\t${target.description ?? ''}`);
  }
  return tabulate(lines, 1);
}

export function targetsJson(targets: readonly TargetInfo[], source: string): string {
  return goJson({ targets, sources: [Buffer.from(source).toString('base64')] });
}

/** `--call=outline`: PrintOutline. */
export function formatOutline(outline: Outline): string {
  let out = '';
  if (outline.name !== undefined || outline.description !== undefined) {
    const lines = [`TARGET:\t${outline.name ?? '(default)'}`];
    if (outline.description !== undefined) lines.push(`DESCRIPTION:\t${outline.description}`);
    out += `${tabulate(lines, 1)}\n`;
  }
  if (outline.args !== undefined) {
    const lines = ['BUILD ARG\tVALUE\tDESCRIPTION'];
    for (const arg of outline.args) lines.push(`${arg.name}\t${arg.value ?? ''}\t${arg.description ?? ''}`);
    out += `${tabulate(lines, 3)}\n`;
  }
  for (const [title, list] of [
    ['SECRET', outline.secrets],
    ['SSH', outline.ssh],
  ] as const) {
    if (list === undefined) continue;
    const lines = [`${title}\tREQUIRED`];
    for (const need of list) lines.push(`${need.name}\t${need.required === true ? 'true' : ''}`);
    out += `${tabulate(lines, 3)}\n`;
  }
  return out;
}

export function outlineJson(outline: Outline, source: string): string {
  return goJson({ ...outline, sources: [Buffer.from(source).toString('base64')] });
}
