import type { Command } from 'commander';
import { cacheDiskUsage, listCache, pruneLayerCache, type CacheLocation } from '../index.js';
import { formatBytes } from './progress.js';

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
