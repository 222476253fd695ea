import { Command, CommanderError } from 'commander';
import { errnoCode, isStratumError } from '../errors.js';
import { commandsFor } from './commands.js';

/**
 * Runs the CLI and returns the exit code: 0 ok, 1 failure, 2 usage. Errors a user can cause
 * are StratumErrors and print as one line; anything else is a bug and prints its stack.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('stratum')
    .description('Build OCI images from Dockerfiles without a daemon')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  try {
    // Only the command used is imported (see commands.ts): start-up is paid for what runs.
    const registers = await Promise.all(commandsFor(argv).map((command) => command.load()));
    for (const register of registers) register(program);
    program.commands.forEach((command) => command.exitOverride());
    await program.parseAsync(['node', 'stratum', ...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; everything else commander rejects is a usage error.
      if (error.exitCode === 0) return 0;
      return 2;
    }
    if (isStratumError(error)) {
      process.stderr.write(`stratum: ${error.message}\n`);
      return error.code === 'USAGE' ? 2 : 1;
    }
    // The system refused something on a path the user chose (permissions, a full or read-only
    // disk): Node's message names the operation and the path; no stack for that.
    const code = errnoCode(error);
    if (code !== undefined && SYSTEM_ERRORS.has(code) && error instanceof Error) {
      process.stderr.write(`stratum: ${error.message}\n`);
      return 1;
    }
    process.stderr.write(
      `stratum: internal error (please report): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    return 1;
  }
}

const VERSION = '0.1.0';

const SYSTEM_ERRORS = new Set([
  'EACCES',
  'EPERM',
  'ENOSPC',
  'EROFS',
  'EDQUOT',
  'ENOENT',
  'ENOTDIR',
  'EISDIR',
  'EEXIST',
  'EMFILE',
  'ENFILE',
  'ELOOP',
  'ENAMETOOLONG',
]);
