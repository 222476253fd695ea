import type { Command } from 'commander';
import { ImageStore, removeImages } from '../api/cli.js';
import { formatBytes } from './progress.js';

/** `stratum images`: what `build -t` and `pull` put in the local image store; `rmi` (`images rm`) takes names out. */
export function registerImages(program: Command): void {
  const images = program
    .command('images')
    .description('list the images in the local image store')
    .option('--json', 'print the list as JSON')
    .option('-q, --quiet', 'print only the names')
    .action(async (options: { json?: boolean; quiet?: boolean }) => {
      const images = await new ImageStore().list();
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
        return;
      }
      if (options.quiet === true) {
        for (const image of images) process.stdout.write(`${image.name}\n`);
        return;
      }
      const width = Math.max(4, ...images.map((image) => image.name.length));
      process.stdout.write(`${'NAME'.padEnd(width)}  DIGEST        SIZE      CREATED\n`);
      for (const image of images) {
        process.stdout.write(
          `${image.name.padEnd(width)}  ${image.digest.slice(7, 19)}  ${formatBytes(image.size).padEnd(8)}  ${image.created ?? ''}\n`,
        );
      }
    });
  const remove = async (names: string[]): Promise<void> => {
    const result = await removeImages(names);
    for (const name of result.removed) process.stdout.write(`Untagged: ${name}\n`);
    process.stdout.write(
      `removed ${result.removedBlobs} blobs, freed ${formatBytes(result.freedBytes)} (layers the cache or another image uses stay)\n`,
    );
  };
  const removeDescription =
    'remove images from the local image store: the names, and the blobs nothing else (another image, a cache entry, a running build) needs';
  program.command('rmi').description(removeDescription).argument('<name...>').action(remove);
  images.command('rm').description(removeDescription).argument('<name...>').action(remove);
}
