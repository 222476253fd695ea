import type { Command } from 'commander';
import { ImageStore } from '../index.js';
import { formatBytes } from './progress.js';

/** `stratum images`: what `build -t` and `pull` put in the local image store. */
export function registerImages(program: Command): void {
  program
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
}
