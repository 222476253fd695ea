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
export { checkDockerfile, reachableStages, type CheckOptions, type CheckWarning } from './checks.js';
export { RULES, type CheckRule, type RuleName } from './check-rules.js';
export { parseCheckConfig, DEFAULT_CHECK_CONFIG, type CheckConfig } from './check-config.js';
export { listTargets, outlineTarget, docComment, type Outline, type TargetInfo } from './outline.js';
export {
  formatCheckResult,
  checkResultJson,
  shortWarning,
  formatWarningSummary,
  formatTargets,
  targetsJson,
  formatOutline,
  outlineJson,
} from './check-format.js';
export type * from './types.js';
