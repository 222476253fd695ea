/**
 * Shell-word expansion as BuildKit's lexer does it (frontend/dockerfile/shell/lex.go): quotes,
 * the escape character, `$VAR`, `${VAR}`, the `-` `+` `?` modifiers with and without `:`, the
 * pattern forms `#` `##` `%` `%%` `/` `//`, and word splitting on unquoted whitespace
 * (including whitespace that comes out of an unquoted expansion).
 *
 * The parser keeps instruction arguments unexpanded; the build engine calls expandWord /
 * expandWords with the build's ARG and ENV values, for the instructions listed in
 * EXPANDING_INSTRUCTIONS. A user's mistake (`${X:?must be set}`, `${`) comes back as a
 * StratumError (expandWord) or as a result value (lexWord), never as a raw exception.
 */
import { StratumError } from '../errors.js';
import { isDigit, isLetter, isSpace } from './chars.js';

/** Where variable values come from: a function (undefined = unset) or a map. */
export type EnvLookup = ((name: string) => string | undefined) | ReadonlyMap<string, string>;

export interface ShellLexOptions {
  /** The Dockerfile's escape character (`# escape=` directive); default backslash. */
  readonly escapeChar?: '\\' | '`';
  /** Keep quote characters in the output (BuildKit's RawQuotes). */
  readonly rawQuotes?: boolean;
  /** Keep escape characters in the output (BuildKit's RawEscapes). */
  readonly rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (BuildKit's SkipProcessQuotes). */
  readonly skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written (BuildKit's SkipUnsetEnv). */
  readonly skipUnset?: boolean;
}

export type LexResult =
  | {
      readonly ok: true;
      /** Single-word result: expansion and quote removal, whitespace kept. */
      readonly value: string;
      /** The same input split into fields on unquoted whitespace. */
      readonly words: readonly string[];
      /** Variable names that were looked up and found / not found. */
      readonly matched: ReadonlySet<string>;
      readonly unmatched: ReadonlySet<string>;
    }
  | { readonly ok: false; readonly message: string };

export interface ExpandOptions extends ShellLexOptions {
  /** Prefix for error messages, e.g. `Dockerfile:12`. */
  readonly where?: string;
}

/**
 * Instructions whose arguments BuildKit expands with ARG/ENV values before use (keys and
 * values of ENV, LABEL, ARG; sources, destination and --from/--chown/--chmod/--exclude/
 * --checksum of ADD and COPY; FROM's image and --platform, with the meta ARGs only; EXPOSE
 * is split into words; RUN expands only its --mount option values). CMD, ENTRYPOINT,
 * HEALTHCHECK, SHELL, ONBUILD and MAINTAINER are never expanded by the builder.
 */
export const EXPANDING_INSTRUCTIONS: ReadonlySet<string> = new Set([
  'add',
  'arg',
  'copy',
  'env',
  'expose',
  'from',
  'label',
  'stopsignal',
  'user',
  'volume',
  'workdir',
]);

const EOF = '';

class LexError extends Error {}

interface Words {
  buf: string;
  words: string[];
  inWord: boolean;
}

function addChar(w: Words, ch: string): void {
  if (isSpace(ch)) {
    if (w.inWord && w.buf.length !== 0) {
      w.words.push(w.buf);
      w.buf = '';
      w.inWord = false;
    }
  } else {
    w.buf += ch;
    w.inWord = true;
  }
}

function addRaw(w: Words, text: string): void {
  w.buf += text;
  w.inWord = true;
}

function getWords(w: Words): string[] {
  if (w.buf.length > 0) {
    w.words.push(w.buf);
    w.buf = '';
    w.inWord = false;
  }
  return w.words;
}

/** One expansion run: a cursor over the input's code points plus the lexer's switches. */
class Lexer {
  private readonly chars: string[];
  private pos = 0;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    input: string,
    private readonly get: (name: string) => string | undefined,
    private readonly options: ShellLexOptions,
    private readonly escape: string,
  ) {
    this.chars = Array.from(input);
    this.rawEscapes = options.rawEscapes ?? false;
  }

  private peek(): string {
    return this.chars[this.pos] ?? EOF;
  }

  private next(): string {
    const ch = this.chars[this.pos] ?? EOF;
    if (ch !== EOF) this.pos++;
    return ch;
  }

  run(): { value: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  private processStopOn(stop: string, rawEscapes: boolean): { value: string; words: string[] } {
    let result = '';
    const words: Words = { buf: '', words: [], inWord: false };
    const savedRaw = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    const quotes = !(this.options.skipProcessQuotes ?? false);
    try {
      while (this.peek() !== EOF) {
        let ch = this.peek();
        if (stop !== EOF && ch === stop) {
          this.next();
          return { value: result, words: getWords(words) };
        }
        if (ch === '$') {
          const tmp = this.processDollar();
          result += tmp;
          for (const c of tmp) addChar(words, c);
        } else if (quotes && (ch === "'" || ch === '"')) {
          const tmp = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += tmp;
          addRaw(words, tmp);
        } else {
          ch = this.next();
          if (ch === this.escape) {
            if (this.rawEscapes) {
              addRaw(words, ch);
              result += ch;
            }
            ch = this.next();
            if (ch === EOF) break;
            addRaw(words, ch);
          } else {
            addChar(words, ch);
          }
          result += ch;
        }
      }
      if (stop !== EOF) {
        throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
      }
      return { value: result, words: getWords(words) };
    } finally {
      this.rawEscapes = savedRaw;
    }
  }

  private processSingleQuote(): string {
    const raw = this.options.rawQuotes ?? false;
    let result = '';
    const open = this.next();
    if (raw) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF)
        throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (raw) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    const raw = this.options.rawQuotes ?? false;
    let result = '';
    const open = this.next();
    if (raw) result += open;
    for (;;) {
      const peek = this.peek();
      if (peek === EOF)
        throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (peek === '"') {
        const close = this.next();
        if (raw) result += close;
        return result;
      }
      if (peek === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next();
      if (ch === this.escape) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        // A trailing escape is dropped; the missing quote is reported on the next turn.
        if (after === EOF) continue;
        if (after === '"' || after === '$' || after === this.escape) ch = this.next();
      }
      result += ch;
    }
  }

  private lookup(name: string): { value: string; set: boolean } {
    const value = this.get(name);
    if (value === undefined) {
      this.unmatched.add(name);
      return { value: '', set: false };
    }
    this.matched.add(name);
    return { value, set: true };
  }

  private processDollar(): string {
    const skipUnset = this.options.skipUnset ?? false;
    this.next();
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const { value, set } = this.lookup(name);
      if (!set && skipUnset) return '$' + name;
      return value;
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = ch === EOF ? '\ufffd' : ch;
    let nullIsUnset = false;
    if (ch === '}') {
      const { value, set } = this.lookup(name);
      if (!set && skipUnset) return '${' + name + '}';
      return value;
    }
    if (ch === ':') {
      nullIsUnset = true;
      ch = this.next();
      chs += ch === EOF ? '\ufffd' : ch;
    }
    if (nullIsUnset || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      const pattern = ch === '#' || ch === '%';
      if (nullIsUnset && pattern) throw new LexError(`unsupported modifier (${chs}) in substitution`);
      const word = this.processWordUntil('}', pattern, "syntax error: missing '}'");
      const { value, set } = this.lookup(name);
      if (skipUnset && !set) return '${' + name + chs + word + '}';
      switch (ch) {
        case '-':
          return !set || (nullIsUnset && value === '') ? word : value;
        case '+':
          return !set || (nullIsUnset && value === '') ? '' : word;
        case '?':
          if (!set) throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && value === '') {
            throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          }
          return value;
        case '#':
        case '%': {
          // `#`/`%` remove the shortest match, `##`/`%%` the longest.
          const greedy = word.startsWith(ch);
          const pat = greedy ? word.slice(1) : word;
          return ch === '%' ? trimSuffix(pat, value, greedy) : trimPrefix(pat, value, greedy);
        }
        default:
          throw new LexError(`unsupported modifier (${chs}) in substitution`);
      }
    }
    if (ch === '/') {
      const replaceAll = this.peek() === '/';
      if (replaceAll) this.next();
      const pattern = this.processWordUntil('/', true, "syntax error: missing '/' in ${}");
      const replacement = this.processWordUntil('}', true, "syntax error: missing '}'");
      const { value, set } = this.lookup(name);
      if (skipUnset && !set) return '${' + name + '/' + pattern + '/' + replacement + '}';
      const re = compilePattern(pattern, true, false, replaceAll);
      if (replaceAll) return value.replace(re, (match) => expandGoTemplate(replacement, match));
      const found = re.exec(value);
      if (found === null) return value;
      return value.slice(0, found.index) + replacement + value.slice(found.index + found[0].length);
    }
    throw new LexError(`unsupported modifier (${chs}) in substitution`);
  }

  private processWordUntil(stop: string, rawEscapes: boolean, eofMessage: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).value;
    } catch (error) {
      if (error instanceof LexError && this.peek() === EOF) throw new LexError(eofMessage);
      throw error;
    }
  }

  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (name === '' && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek())) name += this.next();
        return name;
      }
      if (name === '' && isSpecialParam(ch)) return this.next();
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.next();
    }
    return name;
  }
}

function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch) && ch.length === 1;
}

/**
 * A shell pattern (`?` one char, `*` any run; no bracket expressions, as in BuildKit) as a
 * RegExp. `.` is written as `[^\n]` because Go's `.` excludes only newline.
 */
function compilePattern(pattern: string, greedy: boolean, anchored: boolean, global = false): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? '^' : '';
  const star = greedy ? '[^\\n]*' : '[^\\n]*?';
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i]!;
    switch (tok) {
      case '*':
        out += star;
        continue;
      case '?':
        out += '[^\\n]';
        continue;
      case '\\': {
        const after = chars[i + 1];
        // `}` and `/` had to be escaped inside ${}; the escape is not part of the pattern.
        if (after === '}' || after === '/') continue;
        i++;
        if (after !== '*' && after !== '?' && after !== '\\') {
          throw new LexError(
            `invalid pattern (${pattern}) in substitution: invalid escape '\\${after ?? '\ufffd'}'`,
          );
        }
        out += '\\' + after;
        continue;
      }
      case '[':
      case ']':
      case '{':
      case '}':
      case '.':
      case '+':
      case '(':
      case ')':
      case '|':
      case '^':
      case '$':
      case '/':
        out += '\\' + tok;
        continue;
      default:
        out += tok;
    }
  }
  return new RegExp(out, global ? 'gu' : 'u');
}

/** Go's Regexp.ReplaceAllString template: `$$` is `$`, `$0`/`${0}` the match, other names empty. */
function expandGoTemplate(template: string, match: string): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const rest = template.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      i++;
      continue;
    }
    const m = /^(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/.exec(rest);
    if (m === null) {
      out += '$';
      continue;
    }
    const name = m[1] ?? m[2] ?? '';
    if (/^[0-9]+$/.test(name) && Number(name) === 0) out += match;
    i += m[0].length;
  }
  return out;
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const re = compilePattern(pattern, greedy, true);
  const found = re.exec(value);
  return found === null ? value : value.slice(found.index + found[0].length);
}

/** Reverses a pattern but keeps each escape before the character it escapes (a\*c -> c\*a). */
function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out: string[] = new Array<string>(runes.length).fill('');
  const last = runes.length - 1;
  for (let i = 0; i <= last;) {
    const tok = runes[i]!;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1]!;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(text: string): string {
  return Array.from(text).reverse().join('');
}

/** Shortest/longest rightmost match, found as a leftmost match on the reversed strings. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

function toGetter(lookup: EnvLookup): (name: string) => string | undefined {
  if (typeof lookup === 'function') return lookup;
  return (name) => lookup.get(name);
}

/** Runs the lexer once; errors are returned as values. */
export function lexWord(word: string, lookup: EnvLookup, options: ShellLexOptions = {}): LexResult {
  const lexer = new Lexer(word, toGetter(lookup), options, options.escapeChar ?? '\\');
  try {
    const { value, words } = lexer.run();
    return { ok: true, value, words, matched: lexer.matched, unmatched: lexer.unmatched };
  } catch (error) {
    if (error instanceof LexError || error instanceof SyntaxError) {
      return { ok: false, message: `failed to process ${JSON.stringify(word)}: ${error.message}` };
    }
    throw error;
  }
}

function fail(message: string, options: ExpandOptions): never {
  throw new StratumError('PARSE', options.where !== undefined ? `${options.where}: ${message}` : message);
}

/**
 * Expands one word (BuildKit's ProcessWord): variables replaced, quotes and escapes removed,
 * whitespace kept. Throws a StratumError (code PARSE) for a malformed or failing expansion.
 */
export function expandWord(word: string, lookup: EnvLookup, options: ExpandOptions = {}): string {
  const result = lexWord(word, lookup, options);
  if (!result.ok) fail(result.message, options);
  return result.value;
}

/**
 * Expands and splits into fields (BuildKit's ProcessWords): unquoted whitespace, also from
 * an unquoted expansion, separates words. Throws a StratumError (code PARSE) on failure.
 */
export function expandWords(word: string, lookup: EnvLookup, options: ExpandOptions = {}): string[] {
  const result = lexWord(word, lookup, options);
  if (!result.ok) fail(result.message, options);
  return [...result.words];
}
