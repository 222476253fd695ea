import { humanSize } from '../util/byte-size.js';
import type { Hint, WastedContent } from './types.js';

/**
 * Hints tied to Dockerfile lines. src/analyze may not import the parser (ARCHITECTURE.md), so it
 * takes the parser's instructions structurally: anything with a kind, a line and the text.
 *
 * Steps are matched to instructions by walking both from the end over the instructions that
 * make layers (RUN, COPY, ADD): the image's history starts with its base image's steps, which
 * the Dockerfile does not list, and BuildKit and the classic builder disagree on which metadata
 * instructions get a history entry, so only these three are matched.
 */

export interface HintInstruction {
  readonly kind: string;
  readonly location: { readonly line: number; readonly endLine?: number };
  readonly original: string;
  /** COPY/ADD sources, as the parser gives them. */
  readonly sources?: readonly string[];
}

export interface DockerfileInput {
  /** The file name, for messages. */
  readonly file: string;
  /** The instructions of the stage that made the image (the last one), in order. */
  readonly instructions: readonly HintInstruction[];
}

const LAYER_KINDS = new Set(['run', 'copy', 'add']);

/** The instruction keyword of a history `created_by`, in BuildKit's or the classic builder's form. */
export function historyKeyword(createdBy: string): string | undefined {
  const text = createdBy.trim();
  const nop = /^\/bin\/sh -c #\(nop\)\s*([A-Za-z]+)/.exec(text);
  if (nop) return nop[1]!.toUpperCase();
  // Classic builder RUN: the shell command itself, maybe after `|N ARG=value ...`.
  if (/^(\|\d+ .*?)?\/bin\/sh -c /.test(text)) return 'RUN';
  const word = /^([A-Z]+)\b/.exec(text);
  return word ? word[1] : undefined;
}

/** Package-manager installs, and any step whose command names an install script. */
const INSTALL =
  /\b(npm (ci|install|i)\b|yarn( install)?\b|pnpm (i|install)\b|pip3? install|poetry install|pipenv install|bundle install|go mod download|cargo (build|fetch)|composer install|mvn\b|gradle\b|apt-get install|apk add|dnf install|yum install|dotnet restore)|(^|[\s/])install[\w.-]*/;

function isWholeContext(sources: readonly string[] | undefined): boolean {
  return (sources ?? []).some((source) => ['.', './', '*', './*', '/'].includes(source.trim()));
}

export function dockerfileHints(
  dockerfile: DockerfileInput,
  steps: readonly { readonly index: number; readonly createdBy: string }[],
  wasted: readonly WastedContent[],
): Hint[] {
  const hints: Hint[] = [];
  const instructions = dockerfile.instructions.filter((instruction) => LAYER_KINDS.has(instruction.kind));
  const historySteps = steps.filter((step) => {
    const keyword = historyKeyword(step.createdBy);
    return keyword === 'RUN' || keyword === 'COPY' || keyword === 'ADD';
  });
  // Pair from the end while the keywords agree.
  const lineOfStep = new Map<number, HintInstruction>();
  for (let i = instructions.length - 1, j = historySteps.length - 1; i >= 0 && j >= 0; i--, j--) {
    const instruction = instructions[i]!;
    const step = historySteps[j]!;
    if (historyKeyword(step.createdBy) !== instruction.kind.toUpperCase()) break;
    lineOfStep.set(step.index, instruction);
  }

  // Install and clean up in one RUN.
  const pairs = new Map<
    string,
    { adder: HintInstruction; remover: HintInstruction; bytes: number; files: number }
  >();
  for (const item of wasted) {
    if (item.how !== 'deleted') continue;
    const adder = lineOfStep.get(item.addedBy.step);
    const remover = lineOfStep.get(item.hiddenBy.step);
    if (adder?.kind !== 'run' || remover?.kind !== 'run' || adder === remover) continue;
    const key = `${adder.location.line}:${remover.location.line}`;
    const pair = pairs.get(key) ?? { adder, remover, bytes: 0, files: 0 };
    pair.bytes += item.size;
    pair.files++;
    pairs.set(key, pair);
  }
  for (const pair of [...pairs.values()].sort((a, b) => b.bytes - a.bytes)) {
    hints.push({
      kind: 'cleanup-in-same-run',
      file: dockerfile.file,
      line: pair.adder.location.line,
      relatedLine: pair.remover.location.line,
      bytes: pair.bytes,
      message: `RUN at line ${pair.adder.location.line} adds ${humanSize(pair.bytes)} in ${pair.files} file(s) that the RUN at line ${pair.remover.location.line} deletes; they still ship in line ${pair.adder.location.line}'s layer. Install and clean up in the same RUN.`,
    });
  }

  // Put what changes least first.
  const ordered = dockerfile.instructions;
  for (const [position, instruction] of ordered.entries()) {
    if ((instruction.kind !== 'copy' && instruction.kind !== 'add') || !isWholeContext(instruction.sources))
      continue;
    const install = ordered
      .slice(position + 1)
      .find((later) => later.kind === 'run' && INSTALL.test(later.original));
    if (install === undefined) continue;
    hints.push({
      kind: 'order-for-cache',
      file: dockerfile.file,
      line: instruction.location.line,
      relatedLine: install.location.line,
      message: `${instruction.kind.toUpperCase()} of the whole context at line ${instruction.location.line} comes before the dependency install at line ${install.location.line}: any change to any file re-runs the install. Copy only the dependency manifests (package.json, requirements.txt, go.mod, ...) before installing, and the rest after.`,
    });
  }
  return hints;
}
