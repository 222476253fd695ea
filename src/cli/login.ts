import type { Command } from 'commander';
import { StratumError } from '../errors.js';
import { login, logout } from '../api/cli.js';
import {
  authfileOption,
  insecureRegistryOption,
  registryOptions,
  type RegistryFlags,
} from './registry-flags.js';

interface LoginFlags extends RegistryFlags {
  readonly username?: string;
  readonly password?: string;
  readonly passwordStdin?: boolean;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // Docker strips the trailing newline that `echo $TOKEN |` adds, and nothing else.
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export function registerLogin(program: Command): void {
  program
    .command('login')
    .description('check a username and password against a registry and save them as docker login does')
    .argument('[registry]', 'registry host', 'docker.io')
    .option('-u, --username <name>', 'user name')
    .option(
      '-p, --password <password>',
      'password (visible to other users of this machine: prefer --password-stdin)',
    )
    .option('--password-stdin', 'read the password from standard input')
    .addOption(insecureRegistryOption())
    .addOption(authfileOption('config.json to write'))
    .action(async (registry: string, flags: LoginFlags) => {
      if (flags.username === undefined || flags.username === '') {
        throw new StratumError('USAGE', 'login needs --username');
      }
      if (flags.passwordStdin === true && flags.password !== undefined) {
        throw new StratumError('USAGE', 'login takes --password or --password-stdin, not both');
      }
      const password = flags.passwordStdin === true ? await readStdin() : flags.password;
      if (password === undefined || password === '') {
        throw new StratumError('USAGE', 'login needs a password: pipe it in with --password-stdin');
      }
      if (flags.password !== undefined)
        process.stderr.write('warning: --password is visible in the process list; use --password-stdin\n');
      const saved = await login(registry, { username: flags.username, password }, registryOptions(flags));
      process.stdout.write(
        `Login Succeeded (${saved.registry}, saved in ${saved.helper !== undefined ? `docker-credential-${saved.helper}` : saved.path})\n`,
      );
    });

  program
    .command('logout')
    .description('remove the saved credentials of a registry')
    .argument('[registry]', 'registry host', 'docker.io')
    .addOption(authfileOption('config.json to edit'))
    .action(async (registry: string, flags: { authfile?: string }) => {
      const result = await logout(registry, flags.authfile !== undefined ? { authFile: flags.authfile } : {});
      process.stdout.write(
        result.removed
          ? `Removed login credentials for ${result.registry}\n`
          : `Not logged in to ${result.registry}\n`,
      );
    });
}
