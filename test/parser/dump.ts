/**
 * BuildKit's Node.Dump format (frontend/dockerfile/parser/parser.go), used to compare our AST
 * with BuildKit's golden `result` files byte for byte.
 */
import type { AstNode } from '../../src/parser/types.js';

/** Go's strconv.Quote: escapes \a \b \f \n \r \t \v, " and \, other controls as \xNN/\uNNNN. */
export function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\x07':
        out += '\\a';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      case '\v':
        out += '\\v';
        continue;
    }
    if (code < 0x20 || code === 0x7f) out += '\\x' + code.toString(16).padStart(2, '0');
    else if (code === 0xfffd) out += ch;
    else if (!isPrintable(ch)) {
      out +=
        code > 0xffff
          ? '\\U' + code.toString(16).padStart(8, '0')
          : '\\u' + code.toString(16).padStart(4, '0');
    } else out += ch;
  }
  return out + '"';
}

const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function isPrintable(ch: string): boolean {
  return printable.test(ch);
}

/** Go's fmt %q on a []string: ["a" "b"]. */
function goQuoteList(items: readonly string[]): string {
  return '[' + items.map(goQuote).join(' ') + ']';
}

export function dumpNode(node: AstNode): string {
  let out = node.keyword.toLowerCase();
  if (node.flags.length > 0) out += ' ' + goQuoteList(node.flags);
  if (node.child !== undefined) out += ' (' + dumpNode(node.child) + ')';
  for (const arg of node.args) out += ' ' + goQuote(arg);
  return out.trim();
}

/** The root's Dump plus the newline the Go test appends. */
export function dumpAst(nodes: readonly AstNode[]): string {
  let out = '';
  for (const node of nodes) out += '(' + dumpNode(node) + ')\n';
  return out.trim() + '\n';
}
