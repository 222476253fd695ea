import { Command, CommanderError } from 'commander';
import { errnoCode, isStratumError } from '../errors.js';
import { commandsFor } from './commands.js';
import { sourceExcerpt } from './error-text.js';

/**
 * Runs the CLI and returns the exit code: 0 ok, 1 failure, 2 usage. Errors a user can cause
 * are StratumErrors and print as one line; anything else is a bug and prints its stack.
 */
export async function main(
  argv: readonly string[],
  options: { readonly userNamespaceDecided?: boolean } = {},
): Promise<number> {
  endQuietlyWhenStdoutCloses();
  const program = new Command('stratum')
    .description('Build OCI images from Dockerfiles without a daemon')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  try {
    // Without root, or as root without CAP_SYS_ADMIN (a container's), a build (and cache
    // maintenance, which removes what builds made) runs as root of a user namespace: see
    // src/user-namespace.ts.
    const word = argv.find((arg) => !arg.startsWith('-'));
    // bin/stratum.js decides it before loading the CLI where it can (userNamespaceDecided).
    if (
      (word === 'build' || word === 'cache') &&
      process.argv[1] !== undefined &&
      options.userNamespaceDecided !== true
    ) {
      // Not through index.ts: this process only waits for the namespaced one, and loading every
      // module here would double the start-up of a rootless rebuild.
      const { runInUserNamespace } = await import('../api/rootless.js');
      const code = await runInUserNamespace(process.argv[1], argv);
      if (code !== undefined) return code;
    }
    // Only the command used is imported (see commands.ts): start-up is paid for what runs.
    const registers = await Promise.all(commandsFor(argv).map((command) => command.load()));
    for (const register of registers) register(program);
    program.commands.forEach((command) => command.exitOverride());
    await program.parseAsync(['node', 'stratum', ...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (errnoCode(error) === 'EPIPE') return CLOSED_STDOUT;
    if (error instanceof CommanderError) {
      // Help and version exit 0; everything else commander rejects is a usage error.
      if (error.exitCode === 0) return 0;
      return 2;
    }
    if (isStratumError(error)) {
      // A path that is not UTF-8 is named with its bytes as \xNN (loaded here: errors are rare).
      const { displayName } = await import('../api/cli.js');
      process.stderr.write(`stratum: ${displayName(error.message)}\n${sourceExcerpt(error.location)}`);
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

/**
 * What a shell reports for a program that SIGPIPE ended (128 + 13), as `yes | head -1` leaves
 * `yes`. Node ignores SIGPIPE, so a write to a closed pipe is an EPIPE error instead.
 */
const CLOSED_STDOUT = 141;

/**
 * `stratum images | head -1`: once the reader has gone, the command ends at once and says
 * nothing, as other command-line tools do, instead of Node's unhandled EPIPE stack trace. The
 * exit handlers still run (a build's workspace and leases are removed).
 */
function endQuietlyWhenStdoutCloses(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (error: Error) => {
    if (errnoCode(error) !== 'EPIPE') process.stderr.write(`stratum: standard output: ${error.message}\n`);
    process.exit(errnoCode(error) === 'EPIPE' ? CLOSED_STDOUT : 1);
  });
}

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
