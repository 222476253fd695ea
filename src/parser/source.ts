/**
 * Turns the input into physical lines the way BuildKit's scanner reads them: split on `\n`
 * only, trailing `\r`/`\n` trimmed from each line (so CRLF files parse like LF ones), a UTF-8
 * BOM dropped from the first line. Also catches input BuildKit would choke on: a NUL byte
 * (a binary file) and a line over 65535 bytes (bufio.Scanner's limit, which BuildKit reports).
 */

/** bufio.MaxScanTokenSize - 1: BuildKit rejects longer lines. */
export const MAX_LINE_BYTES = 65535;

export interface SourceLines {
  readonly text: string;
  /** Offset of each physical line's first character in `text`. */
  readonly starts: readonly number[];
}

export type SourceProblem = { readonly message: string; readonly line: number; readonly column: number };

const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export function decodeSource(source: string | Uint8Array): string {
  const text = typeof source === 'string' ? source : decoder.decode(source);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

export function splitLines(text: string): SourceLines {
  const starts: number[] = [];
  if (text.length > 0) starts.push(0);
  let at = text.indexOf('\n');
  while (at !== -1) {
    if (at + 1 < text.length) starts.push(at + 1);
    at = text.indexOf('\n', at + 1);
  }
  return { text, starts };
}

/** The physical line with its line ending (what heredoc bodies keep). */
export function rawLine(src: SourceLines, index: number): string {
  return src.text.slice(src.starts[index], src.starts[index + 1] ?? src.text.length);
}

/** The physical line with trailing `\r` and `\n` removed (BuildKit's trimNewline). */
export function lineText(src: SourceLines, index: number): string {
  const start = src.starts[index]!;
  let end = src.starts[index + 1] ?? src.text.length;
  while (end > start) {
    const code = src.text.charCodeAt(end - 1);
    if (code !== 10 && code !== 13) break;
    end--;
  }
  return src.text.slice(start, end);
}

/** A NUL character or an over-long line, located; undefined for acceptable input. */
export function findSourceProblem(src: SourceLines): SourceProblem | undefined {
  const nul = src.text.indexOf('\0');
  const limitLine = findLongLine(src);
  const nulLine = nul === -1 ? -1 : lineIndexOf(src, nul);
  if (nulLine !== -1 && (limitLine === -1 || nulLine <= limitLine)) {
    return {
      message: 'file looks binary (NUL byte), not a Dockerfile',
      line: nulLine + 1,
      column: nul - src.starts[nulLine]! + 1,
    };
  }
  if (limitLine !== -1) {
    return {
      message: `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`,
      line: limitLine + 1,
      column: 1,
    };
  }
  return undefined;
}

function findLongLine(src: SourceLines): number {
  // A line of n UTF-16 units has at most 3n UTF-8 bytes, so only long lines need counting.
  for (let i = 0; i < src.starts.length; i++) {
    const start = src.starts[i]!;
    const end = src.starts[i + 1] ?? src.text.length;
    if ((end - start) * 3 <= MAX_LINE_BYTES + 1) continue;
    // The scanner's buffer holds the line with its `\n`.
    if (Buffer.byteLength(src.text.slice(start, end)) > MAX_LINE_BYTES + 1) return i;
  }
  return -1;
}

function lineIndexOf(src: SourceLines, offset: number): number {
  let lo = 0;
  let hi = src.starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (src.starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
