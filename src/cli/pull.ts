import type { Command } from 'commander';
import { StratumError } from '../errors.js';
import {
  formatReference,
  openRegistryImage,
  parsePlatform,
  parseRegistryReference,
  writeImage,
  type PullProgress,
} from '../api/cli.js';
import { transferRate } from './push.js';
import {
  authfileOption,
  insecureRegistryOption,
  registryOptions,
  type RegistryFlags,
} from './registry-flags.js';

interface PullFlags extends RegistryFlags {
  readonly platform?: string;
  readonly quiet?: boolean;
}

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('pull an image from a registry into a layout, an archive or the local store')
    .argument('<reference>', 'image in a registry: NAME[:TAG|@DIGEST] or docker://NAME[:TAG|@DIGEST]')
    .argument(
      '[destination]',
      'oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME] or a store name (default: the local store, under the full reference)',
    )
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from a multi-platform image (default: this host)',
    )
    .addOption(insecureRegistryOption())
    .addOption(authfileOption())
    .option('-q, --quiet', 'print only the digest')
    .action(async (text: string, destination: string | undefined, flags: PullFlags) => {
      const ref = parseRegistryReference(text);
      const dest = destination ?? formatReference(ref);
      if (dest.startsWith('docker://')) {
        throw new StratumError(
          'USAGE',
          `pull writes locally; to copy between registries use stratum push with a registry source`,
        );
      }
      const source = await openRegistryImage(ref, {
        ...registryOptions(flags),
        ...(flags.quiet === true
          ? {}
          : {
              onProgress: (event: PullProgress) => {
                if (event.kind !== 'blob-fetched') return;
                const rate =
                  event.seconds === undefined ? '' : `, ${transferRate(event.size, event.seconds)}`;
                process.stderr.write(`${event.digest.slice(7, 19)} fetched (${event.size} bytes${rate})\n`);
              },
            }),
        ...(flags.platform !== undefined ? { platform: parsePlatform(flags.platform) } : {}),
      });
      try {
        if (flags.quiet !== true)
          process.stderr.write(`pulling ${source.name} (${source.manifest.value.layers.length} layers)\n`);
        const result = await writeImage(source, dest);
        process.stdout.write(`${result.digest}\n`);
      } finally {
        await source.close();
      }
    });
}
