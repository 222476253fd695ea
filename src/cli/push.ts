import type { Command } from 'commander';
import { StratumError } from '../errors.js';
import {
  isImageIndex,
  openAllPlatforms,
  openImage,
  parseRegistryReference,
  pushImage,
  pushIndex,
  requireByteSize,
  type PushProgress,
} from '../api/cli.js';
import {
  authfileOption,
  collect,
  insecureRegistryOption,
  registryOptions,
  type RegistryFlags,
} from './registry-flags.js';

interface PushFlags extends RegistryFlags {
  readonly tag?: readonly string[];
  readonly chunkSize?: string;
  readonly mountFrom?: readonly string[];
  readonly quiet?: boolean;
  readonly all?: boolean;
}

/** Upload start times by digest, for the rate printed when a blob is done. */
const uploadStarted = new Map<string, number>();

function progressLine(event: PushProgress): string | undefined {
  switch (event.kind) {
    case 'blob-done': {
      const started = uploadStarted.get(event.digest);
      const rate =
        event.how === 'uploaded' && started !== undefined
          ? `, ${transferRate(event.size, (Date.now() - started) / 1000)}`
          : '';
      return `${short(event.digest)} ${event.how}${event.from !== undefined ? ` from ${event.from}` : ''} (${event.size} bytes${rate})`;
    }
    case 'manifest':
      return `${event.reference} ${event.digest}`;
    case 'blob-start':
      uploadStarted.set(event.digest, Date.now());
      return undefined;
    case 'blob-bytes':
      return undefined;
  }
}

/** `12.3 MB/s`: bytes over seconds, for a blob's transfer. */
export function transferRate(bytes: number, seconds: number): string {
  const perSecond = bytes / Math.max(seconds, 0.001);
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(1)} MB/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} kB/s`;
  return `${Math.round(perSecond)} B/s`;
}

export function registerPush(program: Command): void {
  program
    .command('push')
    .description('push an image to a registry')
    .argument(
      '<source>',
      'image to read: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, or a store name',
    )
    .argument('<destination>', 'docker://NAME[:TAG]')
    .option('-t, --tag <tag>', 'also tag the pushed manifest with this tag (repeatable)', collect)
    .option(
      '--chunk-size <bytes>',
      'upload blobs in PATCH chunks of this size (e.g. 16m) for registries that need it',
    )
    .option(
      '--mount-from <repository>',
      'a repository of the same registry that may hold the blobs (repeatable)',
      collect,
    )
    .addOption(insecureRegistryOption())
    .addOption(authfileOption())
    .option('-q, --quiet', 'print only the digest')
    .option(
      '--all',
      'push every platform of a multi-platform image and its index (from oci:, oci-archive: or the store)',
    )
    .action(async (from: string, to: string, flags: PushFlags) => {
      if (!to.startsWith('docker://')) {
        throw new StratumError(
          'USAGE',
          `push destination "${to}" must be a registry reference: docker://NAME[:TAG]`,
        );
      }
      const ref = parseRegistryReference(to);
      const chunkSize =
        flags.chunkSize !== undefined ? requireByteSize('--chunk-size', flags.chunkSize) : undefined;
      const source = flags.all === true ? await openAllPlatforms(from) : await openImage(from);
      const push = (options: Parameters<typeof pushImage>[2]) =>
        isImageIndex(source) ? pushIndex(source, ref, options) : pushImage(source, ref, options);
      try {
        const result = await push({
          ...registryOptions(flags),
          ...(flags.tag !== undefined ? { tags: flags.tag } : {}),
          ...(chunkSize !== undefined ? { chunkSize } : {}),
          ...(flags.mountFrom !== undefined ? { mountFrom: flags.mountFrom } : {}),
          onProgress: (event) => {
            if (flags.quiet === true) return;
            const line = progressLine(event);
            if (line !== undefined) process.stderr.write(`${line}\n`);
          },
        });
        process.stdout.write(`${result.digest}\n`);
      } finally {
        await source.close();
      }
    });
}

/** A short digest for progress lines. */
export function short(digest: string): string {
  return digest.slice(0, digest.indexOf(':') + 13);
}
