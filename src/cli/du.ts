import type { Command } from 'commander';
import { ImageStore, diskUsage, formatDiskUsage, parseImageReference, StratumError } from '../api/cli.js';

/** `oci:DIR` (a tag, if any, is ignored: du covers the whole layout) or a layout directory. */
function layoutOf(target: string): string {
  if (!target.startsWith('oci:')) return target;
  const reference = parseImageReference(target);
  if (reference.transport !== 'oci') throw new StratumError('USAGE', `du: ${target} is not an oci: layout`);
  return reference.path;
}

export function registerDu(program: Command): void {
  program
    .command('du')
    .description(
      "disk usage of the local image store or an OCI layout: each image's size as usually added up, and the real size with shared blobs counted once",
    )
    .argument('[store]', 'oci:DIR or a layout directory (default: the local image store)')
    .option('--json', 'print the usage as JSON')
    .action(async (target: string | undefined, options: { json?: boolean }) => {
      const usage =
        target === undefined
          ? await (async () => {
              const root = new ImageStore().root;
              return diskUsage(root, { name: `local store ${root}`, missingOk: true });
            })()
          : await diskUsage(layoutOf(target));
      process.stdout.write(
        options.json === true ? JSON.stringify(usage, null, 2) + '\n' : formatDiskUsage(usage),
      );
    });
}
