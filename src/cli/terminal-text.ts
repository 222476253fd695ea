/**
 * Text as a terminal shows it: what a step prints is made safe to redraw (no escape sequences,
 * no carriage-return progress bars, no tabs) and clipped to a number of columns, counting
 * East Asian wide characters and emoji as two columns.
 */

// CSI sequences (colours, cursor moves), OSC sequences (titles, links) and two-byte escapes.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]/g;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** One line of a step's output as it should appear in a redrawn frame. */
export function displayLine(raw: string): string {
  // A tool redrawing its own progress bar with \r: only the text after the last \r is visible.
  const visible = raw.slice(raw.lastIndexOf('\r') + 1);
  return visible.replace(ESCAPES, '').replace(/\t/g, '  ').replace(CONTROLS, '');
}

/** Columns a code point occupies: 2 for wide (CJK, fullwidth, emoji), 0 for combining marks. */
function charWidth(codePoint: number): number {
  if ((codePoint >= 0x300 && codePoint <= 0x36f) || codePoint === 0x200d) return 0;
  if (
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd)
  )
    return 2;
  return 1;
}

export function textWidth(text: string): number {
  let width = 0;
  for (const char of text) width += charWidth(char.codePointAt(0)!);
  return width;
}

/** `text` cut to at most `columns` columns; a cut line ends with "…" so the cut is visible. */
export function clip(text: string, columns: number): string {
  if (textWidth(text) <= columns) return text;
  if (columns <= 0) return '';
  let width = 0;
  let result = '';
  for (const char of text) {
    const next = charWidth(char.codePointAt(0)!);
    if (width + next > columns - 1) break;
    result += char;
    width += next;
  }
  return `${result}…`;
}

/** `left` and `right` on one line of `columns`: `left` is clipped so that `right` always shows. */
export function spread(left: string, right: string, columns: number): string {
  const room = columns - textWidth(right) - 1;
  if (room < 8) return clip(`${left} ${right}`, columns);
  const shown = clip(left, room);
  return `${shown}${' '.repeat(room - textWidth(shown) + 1)}${right}`;
}
