/** The Dockerfile parser's public API (re-exported by src/index.ts). */
export { parseDockerfile, parseDockerfileAst } from './parse.js';
export {
  expandWord,
  expandWords,
  lexWord,
  EXPANDING_INSTRUCTIONS,
  type EnvLookup,
  type ExpandOptions,
  type LexResult,
  type ShellLexOptions,
} from './shell-lex.js';
export { parseMountSpec } from './mount.js';
export { readDockerfileSource } from './read.js';
export { chompHeredoc } from './heredoc.js';
export { onbuildExpression } from './ast.js';
export { INSTRUCTION_NAMES } from './instructions.js';
export { parseGoDuration, formatGoDuration } from './duration.js';
export { formatDiagnostic } from './format.js';
export type * from './types.js';
