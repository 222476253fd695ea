/**
 * parseDockerfile: both parse stages plus the file-level rules (meta ARGs before the first
 * FROM, nothing else before it, unique stage names). Every problem becomes a located
 * Diagnostic; no exception escapes for any input.
 */
import { parseAst, type NodePositions, type Position } from './ast.js';
import { InstructionError, toInstruction } from './instructions.js';
import type {
  ArgInstruction,
  AstNode,
  AstResult,
  Diagnostic,
  FromInstruction,
  Instruction,
  ParseOptions,
  ParseResult,
  Stage,
} from './types.js';

/** Stage one only: BuildKit's AST (what `parser.Parse` returns), e.g. for golden dumps. */
export function parseDockerfileAst(source: string | Uint8Array, options: ParseOptions = {}): AstResult {
  return parseAst(source, options.file ?? 'Dockerfile').result;
}

function positionOf(error: InstructionError, node: AstNode, positions: NodePositions | undefined): Position {
  if (positions === undefined) return { line: node.location.line, column: node.location.column };
  const where = error.where;
  switch (where.at) {
    case 'keyword':
      return positions.keyword;
    case 'rest':
      return positions.rest;
    case 'flag':
      return positions.flags[where.index] ?? positions.keyword;
  }
}

interface StageBuilder {
  readonly index: number;
  readonly from: FromInstruction;
  readonly instructions: Instruction[];
}

/**
 * Parses a Dockerfile into directives, meta ARGs, stages of typed instructions, and
 * diagnostics. `ok` is false when any diagnostic is an error; what could be parsed is still
 * returned.
 */
export function parseDockerfile(source: string | Uint8Array, options: ParseOptions = {}): ParseResult {
  const file = options.file ?? 'Dockerfile';
  // A build parses its Dockerfile three times (its checks, twice, and its plan), and
  // `build --watch` the same text again at every save: the last text's result is kept (the
  // result is readonly data).
  if (typeof source === 'string' && lastParse?.source === source && lastParse.file === file)
    return lastParse.result;
  const result = parseUncached(source, file);
  if (typeof source === 'string') lastParse = { source, file, result };
  return result;
}

let lastParse: { readonly source: string; readonly file: string; readonly result: ParseResult } | undefined;

function parseUncached(source: string | Uint8Array, file: string): ParseResult {
  const { result: ast, positions } = parseAst(source, file);
  const diagnostics: Diagnostic[] = [...ast.diagnostics];
  const metaArgs: ArgInstruction[] = [];
  const stages: StageBuilder[] = [];

  const report = (
    severity: Diagnostic['severity'],
    node: AstNode,
    at: Position,
    message: string,
    extra: Partial<Diagnostic> = {},
  ): void => {
    diagnostics.push({
      severity,
      file,
      line: at.line,
      column: at.column,
      endLine: node.location.endLine,
      message,
      ...extra,
    });
  };

  for (const node of ast.nodes) {
    const pos = positions.get(node);
    let instruction: Instruction;
    try {
      instruction = toInstruction(node);
    } catch (error) {
      if (!(error instanceof InstructionError)) throw error;
      report(
        'error',
        node,
        positionOf(error, node, pos),
        error.message,
        error.suggestion === undefined ? {} : { suggestion: error.suggestion },
      );
      continue;
    }
    const at = pos?.keyword ?? node.location;
    // BuildKit's checks (MaintainerDeprecated, StageNameCasing, DuplicateStageName, ...) are
    // warnings from checks.ts over this result, as BuildKit's linter runs beside its parser.
    if (instruction.kind === 'from') {
      stages.push({ index: stages.length, from: instruction, instructions: [] });
      continue;
    }
    const current = stages[stages.length - 1];
    if (current === undefined) {
      if (instruction.kind === 'arg') {
        metaArgs.push(instruction);
        continue;
      }
      report(
        'error',
        node,
        at,
        `${node.keyword.toUpperCase()} before the first FROM: no build stage in current context`,
        {
          suggestion: 'start the Dockerfile with FROM (only ARG may come before it)',
        },
      );
      continue;
    }
    current.instructions.push(instruction);
  }

  const finished: Stage[] = stages.map((s) => ({
    index: s.index,
    ...(s.from.stageName === undefined ? {} : { name: s.from.stageName }),
    from: s.from,
    instructions: s.instructions,
  }));
  if (finished.length === 0 && !diagnostics.some((d) => d.severity === 'error')) {
    const last = ast.nodes[ast.nodes.length - 1];
    diagnostics.push({
      severity: 'error',
      file,
      line: last?.location.line ?? 1,
      column: 1,
      message: 'no FROM instruction: a Dockerfile needs at least one build stage',
    });
  }
  return {
    file,
    directives: ast.directives,
    escapeChar: ast.escapeChar,
    metaArgs,
    stages: finished,
    diagnostics,
    ok: !diagnostics.some((d) => d.severity === 'error'),
  };
}
