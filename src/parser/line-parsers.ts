/**
 * BuildKit's per-instruction line parsers (parser/line_parsers.go, split_command.go): how
 * the text after the keyword becomes argument values. Each function mirrors its Go
 * counterpart, because the AST they produce is what BuildKit's golden dumps print.
 */
import { isSpace, trimLeftSpace, trimSpace } from './chars.js';

/** A problem in one logical line; `offset` points into that line when known. */
export class LineError extends Error {
  constructor(
    message: string,
    readonly offset?: number,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

export interface LineParse {
  readonly args: readonly string[];
  readonly json: boolean;
}

/** Go's `[\t\v\f\r ]+` (reWhitespace): note, no newline and no Unicode spaces. */
const reWhitespace = /[\t\v\f\r ]+/;
const reWhitespaceGlobal = /[\t\v\f\r ]+/g;

export interface SplitCommand {
  readonly keyword: string;
  readonly keywordOffset: number;
  readonly flags: readonly string[];
  readonly flagOffsets: readonly number[];
  readonly rest: string;
  readonly restOffset: number;
}

/** splitCommand + extractBuilderFlags: the keyword, leading `--flags`, and the rest. */
export function splitCommand(line: string): SplitCommand {
  const lead = line.length - trimLeftSpace(line).length;
  const trimmed = trimSpace(line);
  const ws = reWhitespace.exec(trimmed);
  if (ws === null) {
    return {
      keyword: trimmed,
      keywordOffset: lead,
      flags: [],
      flagOffsets: [],
      rest: '',
      restOffset: line.length,
    };
  }
  const keyword = trimmed.slice(0, ws.index);
  const afterOffset = lead + ws.index + ws[0].length;
  const { rest, restAt, flags, flagOffsets } = extractBuilderFlags(trimmed.slice(ws.index + ws[0].length));
  const restTrimmed = trimSpace(rest);
  const restLead = rest.length - trimLeftSpace(rest).length;
  return {
    keyword,
    keywordOffset: lead,
    flags,
    flagOffsets: flagOffsets.map((o) => o + afterOffset),
    rest: restTrimmed,
    restOffset: afterOffset + restAt + restLead,
  };
}

function extractBuilderFlags(line: string): {
  rest: string;
  restAt: number;
  flags: string[];
  flagOffsets: number[];
} {
  const words: string[] = [];
  const offsets: number[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let wordStart = 0;
  let quote = '';
  let blankOK = false;
  let ch = '';
  for (let pos = 0; pos <= line.length; pos++) {
    if (pos !== line.length) ch = line[pos]!;
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      // Only a word that starts with `--` is a flag; anything else starts the arguments.
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-') {
        return { rest: line.slice(pos), restAt: pos, flags: words, flagOffsets: offsets };
      }
      phase = 'word';
      wordStart = pos;
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) {
        words.push(word);
        offsets.push(wordStart);
      }
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        // A bare `--` ends the flags and is dropped.
        if (word === '--') return { rest: line.slice(pos), restAt: pos, flags: words, flagOffsets: offsets };
        if (blankOK || word.length > 0) {
          words.push(word);
          offsets.push(wordStart);
        }
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === line.length) continue;
        pos++;
        ch = line[pos]!;
      }
      word += ch;
      continue;
    }
    // phase === 'quote'
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      ch = line[pos]!;
    }
    word += ch;
  }
  return { rest: '', restAt: line.length, flags: words, flagOffsets: offsets };
}

/**
 * parseWords: split on whitespace honouring quotes and the escape character, but keep the
 * quotes and escapes in the words (they are removed later, by expansion).
 */
export function parseWords(rest: string, escape: string): string[] {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const chars = Array.from(rest);
  let ch = '';
  for (let pos = 0; pos <= chars.length; pos++) {
    if (pos !== chars.length) ch = chars[pos]!;
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      phase = 'word';
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue;
        // Outside quotes an escape keeps itself and the next character, even a quote.
        word += ch;
        pos++;
        ch = chars[pos]!;
      }
      word += ch;
      continue;
    }
    // phase === 'quote'
    if (ch === quote) phase = 'word';
    // The escape character escapes inside double quotes, not inside single quotes.
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos]!;
    }
    word += ch;
  }
  return words;
}

const none: LineParse = { args: [], json: false };

/** ENV and LABEL: `k=v ...` (triples key, value, "=") or the old `k v` (key, value, ""). */
export function parseNameVal(rest: string, instruction: string, escape: string): LineParse {
  const words = parseWords(rest, escape);
  if (words.length === 0) return none;
  if (!words[0]!.includes('=')) {
    const ws = reWhitespace.exec(rest);
    if (ws === null) throw new LineError(`${instruction} must have two arguments`);
    return { args: [rest.slice(0, ws.index), rest.slice(ws.index + ws[0].length), ''], json: false };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq === -1) {
      throw new LineError(
        `Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`,
      );
    }
    args.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return { args, json: false };
}

/** ARG: each word (quotes kept) is one argument. */
export function parseNameOrNameVal(rest: string, escape: string): LineParse {
  return { args: parseWords(rest, escape), json: false };
}

/** FROM, EXPOSE (and the non-JSON forms of COPY, ADD, VOLUME): split on blanks, no quoting. */
export function parseStringsWhitespaceDelimited(rest: string): LineParse {
  if (rest === '') return none;
  return { args: rest.split(reWhitespaceGlobal), json: false };
}

/** MAINTAINER, USER, WORKDIR, STOPSIGNAL: the rest as one string. */
export function parseString(rest: string): LineParse {
  return rest === '' ? none : { args: [rest], json: false };
}

const notStringArray = 'when using JSON array syntax, arrays must be comprised of strings only';

/**
 * parseJSON: the text must start with `[` and its first JSON value must be an array of
 * strings; like Go's json.Decoder, text after that value is ignored. Returns undefined when
 * the text is not valid JSON (the caller falls back to the shell form) and throws when it is
 * a JSON array holding something other than strings.
 */
export function parseJSON(rest: string): string[] | undefined {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) return undefined;
  const end = endOfJSONValue(text);
  if (end === -1) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text.slice(0, end));
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  const out: string[] = [];
  for (const item of value as unknown[]) {
    if (typeof item !== 'string') throw new LineError(notStringArray);
    out.push(item);
  }
  return out;
}

/** Index just past the JSON value that starts at 0 with `[`, or -1 if it never closes. */
function endOfJSONValue(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      for (i++; i < text.length; i++) {
        const c = text[i];
        if (c === '\\') i++;
        else if (c === '"') break;
      }
      if (i >= text.length) return -1;
    } else if (ch === '[' || ch === '{') {
      depth++;
    } else if (ch === ']' || ch === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** RUN, CMD, ENTRYPOINT, SHELL: a JSON array of strings, else the whole text as one arg. */
export function parseMaybeJSON(rest: string): LineParse {
  if (rest === '') return none;
  const json = parseJSON(rest);
  if (json !== undefined) return { args: json, json: true };
  return { args: [rest], json: false };
}

/** COPY, ADD, VOLUME: a JSON array of strings, else whitespace-separated words. */
export function parseMaybeJSONToList(rest: string): LineParse {
  const json = parseJSON(rest);
  if (json !== undefined) return { args: json, json: true };
  return parseStringsWhitespaceDelimited(rest);
}

/** HEALTHCHECK: the first word (CMD, NONE, ...) then the rest as in RUN. */
export function parseHealthConfig(rest: string): LineParse {
  let sep = 0;
  while (sep < rest.length && !isSpace(rest[sep]!)) sep++;
  let next = sep;
  while (next < rest.length && isSpace(rest[next]!)) next++;
  if (sep === 0) return none;
  const cmd = parseMaybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}
