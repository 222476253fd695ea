import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { StratumError } from '../../errors.js';
import { readContextFile } from './context-file.js';
import { GlobSyntaxError, matchTokens, parseGlob, type MatchToken } from './glob.js';
import { cleanPath } from './paths.js';

/**
 * .dockerignore with Docker's semantics (moby/patternmatcher): later patterns win, `!` re-includes,
 * a pattern also matches every path below a directory it matches, `**` spans directories.
 * The match types (exact, prefix, suffix, pattern) are those of patternmatcher, because they are
 * not equivalent: `**.txt` is a suffix match there and so matches `a.txt`.
 */

type MatchType =
  | { readonly kind: 'exact' }
  | { readonly kind: 'prefix' }
  | { readonly kind: 'suffix' }
  | { readonly kind: 'pattern'; readonly tokens: readonly MatchToken[] };

export interface IgnorePattern {
  /** The pattern as cleaned, without its `!`. */
  readonly pattern: string;
  /** True for a `!` exception (re-includes what earlier patterns excluded). */
  readonly exception: boolean;
  readonly match: MatchType;
}

export interface IgnoreMatcher {
  readonly patterns: readonly IgnorePattern[];
  /** True when some pattern is a `!` exception: excluded directories must still be walked. */
  readonly hasExceptions: boolean;
}

/**
 * Reads the lines of a .dockerignore as BuildKit's `ignorefile.ReadAll` does: a UTF-8 BOM
 * dropped, `#` comments (only at the very start of a line), blank lines skipped, surrounding
 * space trimmed, `!` split off, the path cleaned and a leading `/` dropped.
 */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  for (const rawLine of body.split(/\r?\n/)) {
    if (rawLine.startsWith('#')) continue;
    let line = rawLine.trim();
    if (line === '') continue;
    const exception = line.startsWith('!');
    if (exception) line = line.slice(1).trim();
    if (line.length > 0) {
      line = cleanPath(line);
      if (line.length > 1 && line.startsWith('/')) line = line.slice(1);
    }
    out.push(exception ? `!${line}` : line);
  }
  return out;
}

function compilePattern(cleaned: string): MatchType {
  // A port of patternmatcher's Pattern.compile: the first `**` decides a suffix match, a
  // trailing `**` a prefix match, anything glob-like a pattern, else an exact match. Where
  // patternmatcher builds a RegExp, the same grammar becomes tokens matched directly.
  const chars = Array.from(cleaned);
  const tokens: MatchToken[] = [];
  let detected: 'exact' | 'prefix' | 'suffix' | 'pattern' = 'exact';
  let i = 0;
  for (let index = 0; i < chars.length; index++) {
    const ch = chars[i]!;
    i++;
    if (ch === '*') {
      if (chars[i] === '*') {
        i++;
        if (chars[i] === '/') i++;
        if (i >= chars.length) {
          if (detected === 'exact') detected = 'prefix';
          else {
            tokens.push({ kind: 'globstar', slash: false });
            detected = 'pattern';
          }
        } else {
          tokens.push({ kind: 'globstar', slash: true });
          detected = 'pattern';
        }
        if (index === 0) detected = 'suffix';
      } else {
        tokens.push({ kind: 'star' });
        detected = 'pattern';
      }
    } else if (ch === '?') {
      tokens.push({ kind: 'any' });
      detected = 'pattern';
    } else if (ch === '\\') {
      const next = chars[i];
      if (next !== undefined) {
        tokens.push({ kind: 'literal', char: next });
        i++;
        detected = 'pattern';
      } else {
        tokens.push({ kind: 'literal', char: '\\' });
      }
    } else if (ch === '[') {
      // Re-parse the class with the glob parser so its syntax and escapes are Go's.
      let end = i;
      while (end < chars.length && chars[end] !== ']') end += chars[end] === '\\' ? 2 : 1;
      if (end < chars.length && end === i) end++; // `[]` is a syntax error, caught by the validation
      const token = parseGlob(chars.slice(i - 1, end + 1).join(''))[0];
      if (token?.kind !== 'class') throw new GlobSyntaxError(cleaned);
      tokens.push(token);
      i = end + 1;
      detected = 'pattern';
    } else {
      tokens.push({ kind: 'literal', char: ch });
    }
  }
  if (detected === 'pattern') return { kind: 'pattern', tokens };
  return { kind: detected };
}

/**
 * Builds a matcher from pattern lines (as returned by parseDockerignore). `where` names the file
 * in errors. Each pattern is cleaned again and validated with Go's `filepath.Match` syntax.
 */
export function compileIgnore(lines: readonly string[], where = '.dockerignore'): IgnoreMatcher {
  const patterns: IgnorePattern[] = [];
  for (const raw of lines) {
    let p = raw.trim();
    if (p === '') continue;
    p = cleanPath(p);
    let exception = false;
    if (p.startsWith('!')) {
      if (p.length === 1) throw new StratumError('PARSE', `${where}: illegal exclusion pattern: "!"`);
      exception = true;
      p = p.slice(1);
    }
    try {
      parseGlob(p); // Go's syntax check (filepath.Match(p, "."))
      patterns.push({ pattern: p, exception, match: compilePattern(p) });
    } catch (error) {
      if (error instanceof GlobSyntaxError) {
        throw new StratumError('PARSE', `${where}: bad pattern "${raw}": ${error.message}`);
      }
      throw error;
    }
  }
  return { patterns, hasExceptions: patterns.some((p) => p.exception) };
}

function matchOne(pattern: IgnorePattern, path: string): boolean {
  const { match } = pattern;
  switch (match.kind) {
    case 'exact':
      return path === pattern.pattern;
    case 'prefix':
      return path.startsWith(pattern.pattern.slice(0, -2));
    case 'suffix': {
      const suffix = pattern.pattern.slice(2);
      if (path.endsWith(suffix)) return true;
      return suffix.startsWith('/') && path === suffix.slice(1);
    }
    case 'pattern':
      return matchTokens(match.tokens, path);
  }
}

/**
 * patternmatcher's MatchesOrParentMatches: true when `path` (slash-separated, relative to the
 * context) is excluded. A pattern counts when it matches the path or any of its parent
 * directories; the last pattern that counts decides.
 */
export function isIgnored(matcher: IgnoreMatcher, path: string): boolean {
  const file = cleanPath(path);
  if (file === '.') return false; // the context root itself is never excluded
  const slash = file.lastIndexOf('/');
  const parentDirs = slash < 0 ? [] : file.slice(0, slash).split('/');
  let matched = false;
  for (const pattern of matcher.patterns) {
    if (pattern.exception !== matched) continue;
    let match = matchOne(pattern, file);
    for (let i = 0; !match && i < parentDirs.length; i++) {
      match = matchOne(pattern, parentDirs.slice(0, i + 1).join('/'));
    }
    if (match) matched = !pattern.exception;
  }
  return matched;
}

export interface IgnoreFile {
  /** The file that was read, or undefined when neither exists. */
  readonly path: string | undefined;
  readonly matcher: IgnoreMatcher;
}

/**
 * Finds and reads the ignore file for a build, with BuildKit's precedence: `<Dockerfile>.dockerignore`
 * next to the Dockerfile (e.g. `build/app.Dockerfile.dockerignore`) wins over
 * `CONTEXT/.dockerignore`. Pass no dockerfilePath when the Dockerfile came from standard input.
 * Symlinks resolve inside the context (context-file.ts); beside a Dockerfile outside the
 * context, inside that Dockerfile's directory, as BuildKit reads it.
 */
export async function loadDockerignore(contextDir: string, dockerfilePath?: string): Promise<IgnoreFile> {
  const candidates: { readonly root: string; readonly path: string }[] = [];
  if (dockerfilePath !== undefined) {
    const beside = `${dockerfilePath}.dockerignore`;
    const inContext = relative(contextDir, beside);
    candidates.push(
      inContext.startsWith(`..${sep}`) || isAbsolute(inContext)
        ? { root: dirname(beside), path: basename(beside) }
        : { root: contextDir, path: inContext },
    );
  }
  candidates.push({ root: contextDir, path: '.dockerignore' });
  for (const { root, path } of candidates) {
    const where = join(root, path);
    const file = await readContextFile(root, path, where);
    if (file.content === undefined) continue;
    return { path: where, matcher: compileIgnore(parseDockerignore(file.content.toString('utf8')), where) };
  }
  return { path: undefined, matcher: compileIgnore([]) };
}
