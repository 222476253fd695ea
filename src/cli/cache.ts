import type { Command } from 'commander';
import { cacheDiskUsage, diffCaches, listCache, pruneLayerCache, type CacheLocation } from '../api/cli.js';
import { formatBytes } from './progress.js';
import { insecureRegistryOption } from './registry-flags.js';

function location(opts: { cacheDir?: string }): CacheLocation {
  return opts.cacheDir === undefined ? {} : { cacheDir: opts.cacheDir };
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('look into and clean the layer cache');
  cache
    .command('ls')
    .description('list cache entries: key, layer size, last use and the instruction')
    .option('--cache-dir <dir>', 'layer cache directory')
    .option('--json', 'one JSON array')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => {
      const entries = await listCache(location(opts));
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
        return;
      }
      for (const entry of entries) {
        const size = entry.layer === null ? 'no layer' : formatBytes(entry.size);
        process.stdout.write(
          `${entry.key.slice(7, 19)}  ${size.padStart(9)}  ${entry.lastUsed.toISOString().slice(0, 19)}  ${entry.instruction}\n`,
        );
      }
      process.stdout.write(`${entries.length} entries\n`);
    });
  cache
    .command('du')
    .description('disk used by the cache')
    .option('--cache-dir <dir>', 'layer cache directory')
    .option('--json', 'JSON output')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => {
      const usage = await cacheDiskUsage(location(opts));
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(usage)}\n`);
        return;
      }
      process.stdout.write(
        [
          `entries:        ${usage.entries} (${usage.layerEntries} with a layer)`,
          `layers:         ${usage.layers}, ${formatBytes(usage.layerBytes)} compressed`,
          `blob directory: ${formatBytes(usage.blobBytes)} (shared with the local image store unless --cache-dir)`,
          `cache mounts:   ${formatBytes(usage.mountBytes)}`,
          `unpacked:       ${formatBytes(usage.unpackedBytes)} (layers unpacked for overlay mounts, stage filesystems kept by the scan snapshotter)`,
          `total on disk:  ${formatBytes(usage.totalBytes)} (each file once, hard links counted once)`,
          '',
        ].join('\n'),
      );
    });
  cache
    .command('diff')
    .description(
      "why a build importing BASE misses what OTHER's last build of a Dockerfile made: each of its steps, in BASE or why not",
    )
    .argument(
      '<base>',
      'the cache a build would import: registry:REF, type=registry,ref=REF or type=local,src=DIR',
    )
    .argument('<other>', 'the cache whose last build to compare (same forms)')
    .option(
      '-f, --file <name>',
      'the Dockerfile as the builds named it, relative to the context',
      'Dockerfile',
    )
    .option('--target <stage>', "the build's --target (default: that of OTHER's last build)")
    .addOption(insecureRegistryOption().default([]))
    .option('--json', 'one JSON document')
    .action(
      async (
        base: string,
        other: string,
        opts: { file: string; target?: string; insecureRegistry: string[]; json?: boolean },
      ) => {
        const result = await diffCaches({
          base,
          other,
          dockerfile: opts.file,
          ...(opts.target === undefined ? {} : { target: opts.target }),
          insecureRegistries: opts.insecureRegistry,
        });
        if (opts.json === true) {
          process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
          return;
        }
        const when = (side: typeof result.base): string =>
          side.lastBuild === undefined ? 'no build of it' : `last build exported ${side.lastBuild}`;
        const lines = [
          `${result.dockerfile}${result.target === '' ? '' : ` (--target ${result.target})`}`,
          `  other: ${result.other.name} (${when(result.other)}; ${result.other.entriesOfDockerfile} of ${result.other.entries} entries are this Dockerfile's)`,
          `  base:  ${result.base.name} (${when(result.base)}; ${result.base.entriesOfDockerfile} of ${result.base.entries} entries are this Dockerfile's)`,
        ];
        if (result.steps.length === 0) {
          lines.push(`no build of ${result.dockerfile} in ${result.other.name} to compare`);
        }
        const width = Math.max(0, ...result.steps.map((step) => step.step.length));
        for (const step of result.steps) {
          const verdict = step.inBase ? 'in base' : 'MISS';
          lines.push(
            `${step.step.padEnd(width)}  ${verdict.padEnd(7)}  ${step.key.slice(7, 19)}  ${step.instruction}`,
          );
          for (const reason of step.reasons) lines.push(`${' '.repeat(width)}           changed: ${reason}`);
        }
        const missing = result.steps.filter((step) => !step.inBase).length;
        if (result.steps.length > 0)
          lines.push(
            missing === 0
              ? `every step of the other's last build is in ${result.base.name}`
              : `${missing} of ${result.steps.length} steps would miss with --cache-from ${result.base.name}`,
          );
        process.stdout.write(`${lines.join('\n')}\n`);
      },
    );
  cache
    .command('prune')
    .description('remove cache entries and the layers nothing refers to any more')
    .option('--cache-dir <dir>', 'layer cache directory')
    .option(
      '--keep-storage <size>',
      'keep at most this much layer data (e.g. 10GB), least recently used go first',
    )
    .option('--older-than <duration>', 'remove entries unused for this long (e.g. 24h, 7d)')
    .action(async (opts: { cacheDir?: string; keepStorage?: string; olderThan?: string }) => {
      const result = await pruneLayerCache(location(opts), {
        ...(opts.keepStorage === undefined ? {} : { keepStorage: opts.keepStorage }),
        ...(opts.olderThan === undefined ? {} : { olderThan: opts.olderThan }),
      });
      process.stdout.write(
        `removed ${result.removedEntries} entries and ${result.removedBlobs} blobs, freed ${formatBytes(result.freedBytes)}\n`,
      );
    });
}
