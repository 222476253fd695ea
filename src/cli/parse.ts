import type { Command } from 'commander';
import {
  formatDiagnostic,
  parseDockerfile,
  readDockerfileSource,
  type Instruction,
  type ParseResult,
} from '../api/cli.js';

/** One line per instruction: the keyword upper-cased and the logical line's arguments. */
function describe(instruction: Instruction): string {
  const text = instruction.original.trim().replace(/\s+/g, ' ');
  const shown = text.length > 120 ? `${text.slice(0, 117)}...` : text;
  const rest = shown.slice(instruction.keyword.length).trimStart();
  return `${instruction.keyword.toUpperCase()} ${rest}`.trimEnd();
}

function render(result: ParseResult): string {
  const lines: string[] = [];
  for (const d of result.directives) lines.push(`# ${d.name}=${d.value}`);
  for (const arg of result.metaArgs) lines.push(`${String(arg.location.line).padStart(4)}  ${describe(arg)}`);
  for (const stage of result.stages) {
    const name = stage.name === undefined ? '' : ` "${stage.name}"`;
    const count = stage.instructions.length;
    lines.push(`stage ${stage.index}${name}: ${count} instruction${count === 1 ? '' : 's'} after FROM`);
    for (const instruction of [stage.from, ...stage.instructions]) {
      lines.push(`${String(instruction.location.line).padStart(4)}  ${describe(instruction)}`);
    }
  }
  return lines.join('\n') + '\n';
}

export function registerParse(program: Command): void {
  program
    .command('parse')
    .description('parse a Dockerfile and print its stages and instructions, or located diagnostics')
    .argument('[file]', 'the Dockerfile; - reads standard input', 'Dockerfile')
    .option('--json', 'print the typed parse result as JSON')
    .action(async (file: string, options: { json?: boolean }) => {
      const source = await readDockerfileSource(file);
      const result = parseDockerfile(source, { file: file === '-' ? 'Dockerfile' : file });
      if (options.json === true) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else if (result.ok) process.stdout.write(render(result));
      for (const diagnostic of result.diagnostics) {
        process.stderr.write(formatDiagnostic(diagnostic, source) + '\n');
      }
      if (!result.ok) process.exitCode = 1;
    });
}
