import type { Command } from 'commander';
import { copyImage, parsePlatform } from '../api/cli.js';
import { insecureRegistryOption, registryOptions, type RegistryFlags } from './registry-flags.js';

export function registerCopy(program: Command): void {
  program
    .command('copy')
    .description(
      'copy an image between transports (oci:, oci-archive:, docker-archive:, docker://, the local store; docker-daemon: to read)',
    )
    .argument('<source>', 'image to read')
    .argument(
      '<destination>',
      'where to write it: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker://REF, or a name (the local store)',
    )
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from a multi-platform image (default: this host)',
    )
    .option('--all', 'copy every platform of a multi-platform image (from oci:, oci-archive: or the store)')
    .addOption(insecureRegistryOption())
    .action(
      async (from: string, to: string, options: { platform?: string; all?: boolean } & RegistryFlags) => {
        const result = await copyImage(from, to, {
          ...registryOptions(options),
          ...(options.platform === undefined ? {} : { platform: parsePlatform(options.platform) }),
          ...(options.all === true ? { all: true } : {}),
        });
        // What the destination holds, and why it is not the source's digest when it is not.
        process.stdout.write(`${result.digest}\n`);
        if (result.digest !== result.source.digest) {
          const rewritten =
            result.rewritten ??
            (result.descriptor.mediaType !== result.source.mediaType
              ? `its manifest was rewritten as ${result.descriptor.mediaType} (was ${result.source.mediaType})`
              : 'its manifest was rewritten for this destination');
          process.stderr.write(
            `note: ${to} holds ${result.digest}, not ${from}'s ${result.source.digest}: ${rewritten}\n`,
          );
        }
      },
    );
}
