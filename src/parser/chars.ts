/**
 * Character classes exactly as Go's `unicode` package defines them, because BuildKit's lexers
 * use `unicode.IsSpace`, `unicode.IsLetter` and `unicode.IsDigit`, and JavaScript's `\s`
 * differs (it includes U+FEFF and excludes U+0085).
 */

/** Go's unicode.IsSpace. */
export function isSpace(ch: string): boolean {
  switch (ch) {
    case ' ':
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case '\u0085':
    case '\u00a0':
      return true;
    default: {
      const code = ch.codePointAt(0) ?? 0;
      if (code < 0x1680) return false;
      return (
        code === 0x1680 ||
        (code >= 0x2000 && code <= 0x200a) ||
        code === 0x2028 ||
        code === 0x2029 ||
        code === 0x202f ||
        code === 0x205f ||
        code === 0x3000
      );
    }
  }
}

const letter = /^\p{L}$/u;
const digit = /^\p{Nd}$/u;

/** Go's unicode.IsLetter. */
export function isLetter(ch: string): boolean {
  const code = ch.charCodeAt(0);
  if (code < 0x80) return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
  return letter.test(ch);
}

/** Go's unicode.IsDigit. */
export function isDigit(ch: string): boolean {
  const code = ch.charCodeAt(0);
  if (code < 0x80) return code >= 0x30 && code <= 0x39;
  return digit.test(ch);
}

/** Go's strings.TrimLeftFunc(s, unicode.IsSpace). */
export function trimLeftSpace(text: string): string {
  let i = 0;
  while (i < text.length) {
    const ch = String.fromCodePoint(text.codePointAt(i)!);
    if (!isSpace(ch)) break;
    i += ch.length;
  }
  return i === 0 ? text : text.slice(i);
}

/** Go's strings.TrimSpace. */
export function trimSpace(text: string): string {
  let end = text.length;
  while (end > 0) {
    const code = text.charCodeAt(end - 1);
    // Every Go space is in the BMP, so a trailing surrogate is never a space.
    if (code >= 0xd800 && code <= 0xdfff) break;
    if (!isSpace(text[end - 1]!)) break;
    end--;
  }
  return trimLeftSpace(end === text.length ? text : text.slice(0, end));
}
