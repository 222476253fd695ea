/**
 * Go's `filepath.Match` syntax, shared by COPY wildcards and .dockerignore patterns.
 *
 * A pattern is parsed once into tokens and matched token by token (no RegExp): `*` and `?`
 * never match `/` (so a COPY wildcard matches one path component per pattern component, as
 * `filepath.Match` does); any other character, `-+(){}|^$.` included, is itself. Malformed patterns are rejected the way Go
 * rejects them (`[]a]`, `[-]`, `[x-]`, `[a-b-c]`, an unclosed `[`, a trailing `\`), whatever
 * the path, because Go's Match validates the whole pattern.
 */

export type GlobToken =
  | { readonly kind: 'literal'; readonly char: string }
  | { readonly kind: 'star' }
  | { readonly kind: 'any' }
  | {
      readonly kind: 'class';
      readonly negated: boolean;
      readonly ranges: readonly (readonly [string, string])[];
    };

export class GlobSyntaxError extends Error {
  constructor(pattern: string) {
    super(`syntax error in pattern "${pattern}"`);
    this.name = 'GlobSyntaxError';
  }
}

/** Parses a `filepath.Match` pattern into tokens; throws GlobSyntaxError when Go would. */
export function parseGlob(pattern: string): GlobToken[] {
  const chars = Array.from(pattern); // code points, as Go's scanner works on runes
  const tokens: GlobToken[] = [];
  let i = 0;
  while (i < chars.length) {
    const ch = chars[i]!;
    if (ch === '*') {
      tokens.push({ kind: 'star' });
      i++;
    } else if (ch === '?') {
      tokens.push({ kind: 'any' });
      i++;
    } else if (ch === '\\') {
      const next = chars[i + 1];
      if (next === undefined) throw new GlobSyntaxError(pattern);
      tokens.push({ kind: 'literal', char: next });
      i += 2;
    } else if (ch === '[') {
      i++;
      let negated = false;
      if (chars[i] === '^') {
        negated = true;
        i++;
      }
      const ranges: [string, string][] = [];
      // Go: a class needs at least one range; `]` or `-` may not start or end a range unescaped.
      const readChar = (): string => {
        const c = chars[i];
        if (c === undefined || c === '-' || c === ']') throw new GlobSyntaxError(pattern);
        if (c === '\\') {
          const escaped = chars[i + 1];
          if (escaped === undefined) throw new GlobSyntaxError(pattern);
          i += 2;
          return escaped;
        }
        i++;
        return c;
      };
      for (;;) {
        if (chars[i] === ']' && ranges.length > 0) {
          i++;
          break;
        }
        const lo = readChar();
        let hi = lo;
        if (chars[i] === '-') {
          i++;
          hi = readChar();
        }
        ranges.push([lo, hi]);
      }
      tokens.push({ kind: 'class', negated, ranges });
    } else {
      tokens.push({ kind: 'literal', char: ch });
      i++;
    }
  }
  return tokens;
}

/**
 * A compiled pattern: tokens matched against a name directly, never through a RegExp (a
 * RegExp built by escaping breaks on the characters it forgets: `-`, `{`, `|`, ...).
 * `globstar` tokens come only from .dockerignore patterns: `**` followed by `/` matches nothing or
 * anything ending in `/` (patternmatcher's optional `.*` plus slash group), a final `**` anything.
 */
export type MatchToken = GlobToken | { readonly kind: 'globstar'; readonly slash: boolean };

function classMatches(token: Extract<GlobToken, { kind: 'class' }>, ch: string): boolean {
  const code = ch.codePointAt(0)!;
  const inRange = token.ranges.some(([lo, hi]) => lo.codePointAt(0)! <= code && code <= hi.codePointAt(0)!);
  return inRange !== token.negated;
}

/** True when `tokens` match all of `name`; `*`, `?` never match `/`, as in `filepath.Match`. */
export function matchTokens(tokens: readonly MatchToken[], name: string): boolean {
  const chars = Array.from(name);
  // Positions (token, char) already known not to match: keeps backtracking over stars linear-ish.
  const failed = new Set<number>();
  const width = chars.length + 1;
  const match = (t: number, c: number): boolean => {
    for (;;) {
      if (failed.has(t * width + c)) return false;
      const token = tokens[t];
      if (token === undefined) return c === chars.length;
      const ch = chars[c];
      switch (token.kind) {
        case 'literal':
          if (ch !== token.char) return fail(t, c);
          t++;
          c++;
          continue;
        case 'any':
          if (ch === undefined || ch === '/') return fail(t, c);
          t++;
          c++;
          continue;
        case 'class':
          if (ch === undefined || !classMatches(token, ch)) return fail(t, c);
          t++;
          c++;
          continue;
        case 'star':
          // Zero or more characters within one path component.
          for (let end = c; ; end++) {
            if (match(t + 1, end)) return true;
            if (end >= chars.length || chars[end] === '/') return fail(t, c);
          }
        case 'globstar':
          if (!token.slash) {
            for (let end = c; end <= chars.length; end++) if (match(t + 1, end)) return true;
            return fail(t, c);
          }
          // Nothing, or anything up to and including a `/`.
          if (match(t + 1, c)) return true;
          for (let end = c; end < chars.length; end++)
            if (chars[end] === '/' && match(t + 1, end + 1)) return true;
          return fail(t, c);
      }
    }
  };
  const fail = (t: number, c: number): false => {
    failed.add(t * width + c);
    return false;
  };
  return match(0, 0);
}

/** A name matcher for a `filepath.Match` pattern; throws GlobSyntaxError on a malformed one. */
export function compileGlob(pattern: string): (name: string) => boolean {
  const tokens = parseGlob(pattern);
  return (name) => matchTokens(tokens, name);
}

/** `filepath.Match(pattern, name)`; throws GlobSyntaxError on a malformed pattern. */
export function globMatch(pattern: string, name: string): boolean {
  return compileGlob(pattern)(name);
}

/**
 * True when a path component holds wildcard characters (`*`, `?`, `[`), skipping escaped
 * characters, as BuildKit's `containsWildcards` does.
 */
export function hasWildcards(component: string): boolean {
  for (let i = 0; i < component.length; i++) {
    const ch = component[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}
