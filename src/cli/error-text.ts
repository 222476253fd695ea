import { readFileSync } from 'node:fs';
import type { SourceLocation } from '../errors.js';

/**
 * The Dockerfile line an error comes from, with a caret under its column, as parse errors
 * show it. Nothing when the file cannot be read again (`-f -` read standard input).
 */
export function sourceExcerpt(location: SourceLocation | undefined): string {
  if (location === undefined) return '';
  let text = location.text;
  if (text === undefined) {
    try {
      text = readFileSync(location.file, 'utf8').split('\n')[location.line - 1];
    } catch {
      return '';
    }
  }
  if (text === undefined) return '';
  const shown = text.replace(/\r+$/, '').slice(0, 200);
  const column = Math.max(1, Math.min(location.column ?? 1, shown.length + 1));
  const pad = shown.slice(0, column - 1).replace(/[^\t]/g, ' ');
  return `    ${shown}\n    ${pad}^\n`;
}
