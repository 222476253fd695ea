/**
 * Heredoc detection as BuildKit does it (parser/parser.go heredocsFromLine, ParseHeredoc):
 * the instruction line is split into shell words (quotes and escapes kept), and every word
 * shaped like `[n]<<[-]NAME` opens a heredoc. A quoted NAME turns expansion of the body off.
 */
import { lexWord } from './shell-lex.js';
import { LineError } from './line-parsers.js';

export interface HeredocHeader {
  readonly name: string;
  readonly fileDescriptor: number;
  readonly expand: boolean;
  readonly chomp: boolean;
}

const reHeredoc = /^([0-9]*)<<(-?)([^<]*)$/;
const noEnv = (): undefined => undefined;

/** ParseHeredoc: the heredoc a single word opens, or undefined if it opens none. */
export function parseHeredocWord(word: string): HeredocHeader | undefined {
  const match = reHeredoc.exec(word);
  if (match === null) return undefined;
  const fd = match[1] === '' || match[1] === undefined ? 0 : Number.parseInt(match[1], 10);
  const chomp = match[2] === '-';
  const rest = match[3] ?? '';
  if (rest === '') return undefined;
  // Lex the name with and without quote removal: if the counts of quote characters differ,
  // part of the name was quoted, and the body must not be expanded.
  const plain = lexWord(rest, noEnv, { skipUnset: true });
  if (!plain.ok) throw new LineError(plain.message);
  if (plain.words.length !== 1) return undefined;
  const raw = lexWord(rest, noEnv, { skipUnset: true, rawQuotes: true });
  if (!raw.ok) throw new LineError(raw.message);
  if (raw.words.length !== plain.words.length) {
    throw new LineError(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const name = plain.words[0]!;
  const expand = countQuotes(name) === countQuotes(raw.words[0]!);
  return { name, fileDescriptor: Number.isSafeInteger(fd) ? fd : 0, expand, chomp };
}

function countQuotes(text: string): number {
  let n = 0;
  for (const ch of text) if (ch === "'" || ch === '"') n++;
  return n;
}

/** heredocsFromLine: every heredoc the logical line opens, in order. */
export function heredocsFromLine(line: string): HeredocHeader[] {
  const lexed = lexWord(line, noEnv, { rawQuotes: true, rawEscapes: true, skipUnset: true });
  // BuildKit ignores a lexing error here (an unbalanced quote simply yields no heredocs).
  if (!lexed.ok) return [];
  const out: HeredocHeader[] = [];
  for (const word of lexed.words) {
    const heredoc = parseHeredocWord(word);
    if (heredoc !== undefined) out.push(heredoc);
  }
  return out;
}

/** ChompHeredocContent: removes leading tabs from every line. */
export function chompHeredoc(content: string): string {
  // Go's (?m)^ starts a line only after \n (JavaScript's m flag also breaks at \r).
  return content.replace(/(^|\n)\t+/g, '$1');
}
