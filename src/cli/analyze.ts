import type { Command } from 'commander';
import { resolve } from 'node:path';
import {
  analyzeImage,
  checkOutput,
  formatAnalysis,
  openImage,
  parseDockerfile,
  parsePlatform,
  readDockerfileSource,
  writeAnalysisHtml,
  type DockerfileInput,
} from '../api/cli.js';

async function readDockerfile(file: string): Promise<DockerfileInput> {
  const result = parseDockerfile(await readDockerfileSource(file), { file });
  const last = result.stages[result.stages.length - 1];
  return { file, instructions: last === undefined ? [] : last.instructions };
}

export function registerAnalyze(program: Command): void {
  program
    .command('analyze')
    .description(
      "show what an image's layers cost: sizes and changes per layer, wasted bytes, recoverable (deleted) files, copy-ups and efficiency",
    )
    .argument(
      '<image>',
      'oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME], docker://REF, docker-daemon:NAME, or a stored name',
    )
    .option('--json', 'print the analysis as JSON')
    .option('--html <file>', 'also write a self-contained HTML page with a layer chart')
    .option('-f, --file <dockerfile>', 'the Dockerfile that built the image, for hints tied to its lines')
    .option(
      '--platform <os/arch[/variant]>',
      'platform to pick from a multi-platform image (default: this host)',
    )
    .action(
      async (image: string, options: { json?: boolean; html?: string; file?: string; platform?: string }) => {
        // Before the analysis, so that a path that cannot be written costs none.
        if (options.html !== undefined)
          await checkOutput(resolve(options.html), 'file', { label: `--html ${options.html}` });
        const dockerfile = options.file === undefined ? undefined : await readDockerfile(options.file);
        const source = await openImage(
          image,
          options.platform === undefined ? {} : { platform: parsePlatform(options.platform) },
        );
        try {
          const analysis = await analyzeImage(source, dockerfile === undefined ? {} : { dockerfile });
          if (options.html !== undefined) await writeAnalysisHtml(analysis, options.html);
          process.stdout.write(
            options.json === true ? JSON.stringify(analysis, null, 2) + '\n' : formatAnalysis(analysis),
          );
        } finally {
          await source.close();
        }
      },
    );
}
