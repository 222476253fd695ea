/**
 * Renders a diagnostic the way compilers do: `Dockerfile:12:5: error: message`, then the
 * source line and a caret under the column, then the suggestion.
 */
import type { Diagnostic } from './types.js';

const decoder = new TextDecoder();

export function formatDiagnostic(diagnostic: Diagnostic, source?: string | Uint8Array): string {
  const head = `${diagnostic.file}:${diagnostic.line}:${diagnostic.column}: ${diagnostic.severity}: ${diagnostic.message}`;
  const lines = [head];
  if (source !== undefined) {
    const text = sourceLine(typeof source === 'string' ? source : decoder.decode(source), diagnostic.line);
    if (text !== undefined) {
      // Long lines (a minified blob) are cut so the caret stays readable.
      const shown = text.length > 200 ? text.slice(0, 200) + '…' : text;
      lines.push(`    ${shown}`);
      const col = Math.max(1, Math.min(diagnostic.column, shown.length + 1));
      // Keep tabs so the caret lines up under the same column.
      const pad = shown.slice(0, col - 1).replace(/[^\t]/g, ' ');
      lines.push(`    ${pad}^`);
    }
  }
  if (diagnostic.suggestion !== undefined && !diagnostic.message.includes(diagnostic.suggestion)) {
    lines.push(`    hint: ${diagnostic.suggestion}`);
  }
  return lines.join('\n');
}

function sourceLine(source: string, line: number): string | undefined {
  let start = 0;
  for (let n = 1; n < line; n++) {
    const next = source.indexOf('\n', start);
    if (next === -1) return undefined;
    start = next + 1;
  }
  const end = source.indexOf('\n', start);
  const text = source.slice(start, end === -1 ? source.length : end).replace(/\r+$/, '');
  return text.replace(/^\ufeff/, '');
}
