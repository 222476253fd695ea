/**
 * Stage one of the parse, a port of BuildKit's parser.Parse: physical lines -> directives,
 * logical lines (continuations joined, comment lines dropped, blank continuation lines
 * skipped with a warning), heredoc bodies -> one AstNode per instruction. Nothing here knows
 * what an instruction means beyond which line parser splits its arguments.
 */
import { trimLeftSpace } from './chars.js';
import { heredocsFromLine } from './heredoc.js';
import {
  LineError,
  parseHealthConfig,
  parseMaybeJSON,
  parseMaybeJSONToList,
  parseNameOrNameVal,
  parseNameVal,
  parseString,
  parseStringsWhitespaceDelimited,
  splitCommand,
  type LineParse,
} from './line-parsers.js';
import { decodeSource, findSourceProblem, lineText, rawLine, splitLines } from './source.js';
import type { AstNode, AstResult, Diagnostic, Directive, Heredoc, SourceRange } from './types.js';

export interface Position {
  readonly line: number;
  readonly column: number;
}

/** Where the parts of a node sit in the source, for diagnostics of the typed stage. */
export interface NodePositions {
  readonly keyword: Position;
  readonly flags: readonly Position[];
  readonly rest: Position;
}

export interface AstParse {
  readonly result: AstResult;
  readonly positions: WeakMap<AstNode, NodePositions>;
}

type Escape = '\\' | '`';

// Go's \s is [\t\n\f\r ]; `.` excludes only \n.
const reDirective = /^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;
const reOnbuildPrefix = /^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i;

const heredocInstructions = new Set(['add', 'copy', 'run']);

function continuationRegex(escape: Escape): RegExp {
  const e = escape === '\\' ? '\\\\' : '`';
  // The escape at the end of a line continues it, unless the escape is itself escaped;
  // an escape alone on a line continues too.
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

interface Segment {
  readonly offset: number;
  readonly line: number;
  readonly column: number;
}

function locate(segments: readonly Segment[], offset: number): Position {
  let seg = segments[0]!;
  for (const s of segments) {
    if (s.offset <= offset) seg = s;
    else break;
  }
  return { line: seg.line, column: seg.column + (offset - seg.offset) };
}

function lineParse(keyword: string, rest: string, escape: Escape): LineParse {
  switch (keyword.toLowerCase()) {
    case 'add':
    case 'copy':
    case 'volume':
      return parseMaybeJSONToList(rest);
    case 'arg':
      return parseNameOrNameVal(rest, escape);
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      return parseMaybeJSON(rest);
    case 'env':
      return parseNameVal(rest, 'ENV', escape);
    case 'label':
      return parseNameVal(rest, 'LABEL', escape);
    case 'expose':
    case 'from':
      return parseStringsWhitespaceDelimited(rest);
    case 'healthcheck':
      return parseHealthConfig(rest);
    case 'onbuild':
      // Only reached with nothing after ONBUILD (a trigger is parsed as a child node).
      return { args: [], json: false };
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      return parseString(rest);
    default:
      // Unknown instructions parse to one empty argument; the typed stage rejects them.
      return { args: [''], json: false };
  }
}

interface Built {
  readonly node: Omit<AstNode, 'heredocs' | 'location'> & { child?: AstNode };
  readonly childBuilt?: Built;
  readonly keywordOffset: number;
  readonly flagOffsets: readonly number[];
  readonly restOffset: number;
}

/** newNodeFromLine; offsets are relative to `line`. */
function buildNode(line: string, escape: Escape, base: number): Built {
  const split = splitCommand(line);
  const shift = (o: number): number => o + base;
  if (split.keyword.toLowerCase() === 'onbuild' && split.rest !== '') {
    const inner = buildNode(split.rest, escape, split.restOffset + base);
    return {
      node: { keyword: split.keyword, flags: split.flags, args: [], json: false, original: line },
      childBuilt: inner,
      keywordOffset: shift(split.keywordOffset),
      flagOffsets: split.flagOffsets.map(shift),
      restOffset: shift(split.restOffset),
    };
  }
  let parsed: LineParse;
  try {
    parsed = lineParse(split.keyword, split.rest, escape);
  } catch (error) {
    if (error instanceof LineError && error.offset === undefined) {
      throw new LineError(error.message, split.restOffset + base, error.suggestion);
    }
    throw error;
  }
  return {
    node: {
      keyword: split.keyword,
      flags: split.flags,
      args: parsed.args,
      json: parsed.json,
      original: line,
    },
    keywordOffset: shift(split.keywordOffset),
    flagOffsets: split.flagOffsets.map(shift),
    restOffset: shift(split.restOffset),
  };
}

function canContainHeredoc(built: Built): boolean {
  const target = built.childBuilt ?? built;
  if (!heredocInstructions.has(target.node.keyword.toLowerCase())) return false;
  return !target.node.json;
}

export function parseAst(source: string | Uint8Array, file: string): AstParse {
  const diagnostics: Diagnostic[] = [];
  const directives: Directive[] = [];
  const nodes: AstNode[] = [];
  const positions = new WeakMap<AstNode, NodePositions>();
  const error = (message: string, at: Position, extra: Partial<Diagnostic> = {}): void => {
    diagnostics.push({ severity: 'error', file, line: at.line, column: at.column, message, ...extra });
  };
  const finish = (escapeChar: Escape): AstParse => ({
    result: {
      file,
      nodes,
      directives,
      escapeChar,
      diagnostics,
      ok: !diagnostics.some((d) => d.severity === 'error'),
    },
    positions,
  });

  const src = splitLines(decodeSource(source));
  const problem = findSourceProblem(src);
  if (problem !== undefined) {
    error(problem.message, problem);
    return finish('\\');
  }

  let escape: Escape = '\\';
  let contRe = continuationRegex(escape);
  let directivesDone = false;
  const seen = new Set<string>();
  /** possibleParserDirective: only lines before anything else can be directives. */
  const directive = (text: string, lineNo: number): string | undefined => {
    if (directivesDone) return undefined;
    const match = reDirective.exec(text);
    const name = match?.[1]?.toLowerCase();
    if (match === null || (name !== 'syntax' && name !== 'escape' && name !== 'check')) {
      directivesDone = true;
      return undefined;
    }
    if (seen.has(name)) return `only one ${name} parser directive can be used`;
    seen.add(name);
    const value = match[2]!;
    if (name === 'escape') {
      if (value !== '`' && value !== '\\') return `invalid escape token '${value}' does not match \` or \\`;
      escape = value;
      contRe = continuationRegex(escape);
    }
    directives.push({ name, value, line: lineNo });
    return undefined;
  };
  const trimContinuation = (text: string): [string, boolean] => {
    const m = contRe.exec(text);
    if (m === null) return [text, true];
    return [text.slice(0, m.index) + (m[1] ?? ''), false];
  };

  const count = src.starts.length;
  // BuildKit's PrevComment: the comment lines since the last instruction (an empty `#` line
  // starts over, a directive is not one), given to the next instruction for descriptions and
  // per-instruction `# check=` settings.
  let comments: string[] = [];
  for (let i = 0; i < count; i++) {
    const raw = lineText(src, i);
    const trimmed = trimLeftSpace(raw);
    if (trimmed.startsWith('#')) {
      const comment = raw.slice(1).trim();
      comments = comment === '' ? [] : [...comments, comment];
    }
    const directiveCount = directives.length;
    const bad = directive(trimmed, i + 1);
    if (bad !== undefined) {
      error(bad, { line: i + 1, column: 1 });
      return finish(escape);
    }
    if (directives.length > directiveCount) comments = comments.slice(0, -1);
    const startLine = i + 1;
    const [first, firstEnd] = trimContinuation(trimmed.startsWith('#') ? '' : trimmed);
    let endOfLine = firstEnd;
    if (endOfLine && first === '') continue;

    let line = first;
    const segments: Segment[] = [{ offset: 0, line: startLine, column: raw.length - trimmed.length + 1 }];
    let emptyContinuation = false;
    while (!endOfLine && i + 1 < count) {
      i++;
      const next = lineText(src, i);
      const badNext = directive(next, i + 1);
      if (badNext !== undefined) {
        error(badNext, { line: i + 1, column: 1 });
        return finish(escape);
      }
      const nextTrimmed = trimLeftSpace(next);
      // Comment lines inside a continued instruction are dropped.
      if (nextTrimmed.startsWith('#')) continue;
      if (nextTrimmed === '') {
        emptyContinuation = true;
        continue;
      }
      const [text, end] = trimContinuation(next);
      segments.push({ offset: line.length, line: i + 1, column: 1 });
      line += text;
      endOfLine = end;
    }
    let endLine = i + 1;
    if (emptyContinuation) {
      diagnostics.push({
        severity: 'warning',
        file,
        line: endLine,
        column: 1,
        message: `Empty continuation line found in: ${line}`,
        suggestion: 'remove the blank line; empty continuation lines will become errors in a future release',
        rule: 'NoEmptyContinuation',
      });
    }

    const prevComments = comments;
    comments = [];
    let built: Built;
    try {
      built = buildNode(line, escape, 0);
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      error(err.message, locate(segments, err.offset ?? 0), { endLine });
      continue;
    }

    const heredocs: Heredoc[] = [];
    if (canContainHeredoc(built) && line.includes('<<')) {
      let headers;
      try {
        headers = heredocsFromLine(line);
      } catch (err) {
        if (!(err instanceof LineError)) throw err;
        error(err.message, locate(segments, 0), { endLine });
        continue;
      }
      let unterminated = false;
      for (const header of headers) {
        let content = '';
        let terminated = false;
        while (i + 1 < count) {
          i++;
          let candidate = lineText(src, i);
          if (header.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === header.name) {
            terminated = true;
            break;
          }
          content += rawLine(src, i);
        }
        if (!terminated) {
          error(`unterminated heredoc ${JSON.stringify(header.name)}`, locate(segments, 0), {
            endLine: i + 1,
            suggestion: `end the heredoc with a line holding only ${header.name}`,
          });
          unterminated = true;
          break;
        }
        heredocs.push({ ...header, content });
      }
      if (unterminated) continue;
      endLine = i + 1;
    }

    const toNode = (b: Built, withHeredocs: readonly Heredoc[]): AstNode => {
      const kw = locate(segments, b.keywordOffset);
      const location: SourceRange = { line: startLine, column: kw.column, endLine };
      const child = b.childBuilt === undefined ? undefined : toNode(b.childBuilt, []);
      const node: AstNode = {
        keyword: b.node.keyword,
        flags: b.node.flags,
        args: b.node.args,
        json: b.node.json,
        ...(child === undefined ? {} : { child }),
        heredocs: withHeredocs,
        original: b.node.original,
        location,
        ...(prevComments.length > 0 && b === built ? { comments: prevComments } : {}),
      };
      positions.set(node, {
        keyword: kw,
        flags: b.flagOffsets.map((o) => locate(segments, o)),
        rest: locate(segments, b.restOffset),
      });
      return node;
    };
    nodes.push(toNode(built, heredocs));
  }

  if (nodes.length === 0 && !diagnostics.some((d) => d.severity === 'error')) {
    error('file with no instructions', { line: Math.max(count, 1), column: 1 });
  }
  return finish(escape);
}

/** The ONBUILD trigger text as Docker stores it (config OnBuild): the line minus `ONBUILD`. */
export function onbuildExpression(original: string): string {
  return original.replace(reOnbuildPrefix, '');
}
