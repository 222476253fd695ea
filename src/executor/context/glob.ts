/**
 * Go's `filepath.Match` syntax, shared by COPY wildcards and .dockerignore patterns.
 *
 * A pattern is parsed once into tokens; `compileGlob` turns the tokens into an anchored RegExp
 * in which `*` and `?` never match `/` (so a COPY wildcard matches one path component per
 * pattern component, as `filepath.Match` does). Malformed patterns are rejected the way Go
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

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|/-]/;

/** Escapes one character for use in a RegExp with the `u` flag (inside or outside a class). */
export function regexChar(ch: string): string {
  return REGEX_SPECIAL.test(ch) ? `\\${ch}` : ch;
}

export function classRegex(token: Extract<GlobToken, { kind: 'class' }>): string {
  const body = token.ranges
    .map(([lo, hi]) => (lo === hi ? regexChar(lo) : `${regexChar(lo)}-${regexChar(hi)}`))
    .join('');
  return `[${token.negated ? '^' : ''}${body}]`;
}

/** Anchored RegExp for a `filepath.Match` pattern (a `*` or `?` never matches `/`). */
export function compileGlob(pattern: string): RegExp {
  let source = '^';
  for (const token of parseGlob(pattern)) {
    switch (token.kind) {
      case 'literal':
        source += regexChar(token.char);
        break;
      case 'star':
        source += '[^/]*';
        break;
      case 'any':
        source += '[^/]';
        break;
      case 'class':
        source += classRegex(token);
        break;
    }
  }
  return new RegExp(`${source}$`, 'u');
}

/** `filepath.Match(pattern, name)`; throws GlobSyntaxError on a malformed pattern. */
export function globMatch(pattern: string, name: string): boolean {
  return compileGlob(pattern).test(name);
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
