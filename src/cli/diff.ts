import type { Command } from 'commander';
import { diffImages, formatImageDiff, openImage, parsePlatform, type ImageSource } from '../api/cli.js';

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description(
      "compare two images step by step: the filesystem after each history entry (type, mode, owner, content, link target, device, hard links) and the config fields a Dockerfile sets; exit 0 when equivalent, 1 when not (entries re-emitted unchanged in one side's layer are listed but count only with --strict)",
    )
    .argument(
      '<a>',
      'an image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker://REF, docker-daemon:NAME, or a stored name',
    )
    .argument('<b>', 'the image to compare it with (any transport)')
    .option('--times', 'compare modification times too')
    .option(
      '--strict',
      "layer-exact: exit 1 also when the only differences are entries one side's layer re-emitted unchanged, or a layer one side made that changed nothing",
    )
    .option('--json', 'print the comparison as JSON')
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from multi-platform images (default: this host)',
    )
    .action(
      async (
        a: string,
        b: string,
        options: { times?: boolean; json?: boolean; platform?: string; strict?: boolean },
      ) => {
        const openOptions =
          options.platform === undefined ? {} : { platform: parsePlatform(options.platform) };
        const opened: ImageSource[] = [];
        try {
          opened.push(await openImage(a, openOptions));
          opened.push(await openImage(b, openOptions));
          const diff = await diffImages(opened[0]!, opened[1]!, { times: options.times === true });
          process.stdout.write(
            options.json === true ? JSON.stringify(diff, null, 2) + '\n' : formatImageDiff(diff),
          );
          const same = options.strict === true ? diff.equivalent : diff.filesystemsEquivalent;
          process.exitCode = same ? 0 : 1;
        } finally {
          for (const source of opened) await source.close();
        }
      },
    );
}
