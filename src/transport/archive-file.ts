import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StratumError, errnoCode } from '../errors.js';
import {
  SNIFF_BYTES,
  createDecompressor,
  isDecompressionError,
  sniffCompression,
} from '../oci/compression.js';
import { makeOwnedTempDir } from '../util/temp-dir.js';
import { tarAccess, type FileAccess } from './files.js';
import { indexTar } from './tar-index.js';
import { resolvedNow } from '../util/now.js';

/**
 * What the on-disk transports share when opening a path: the name used in messages, the check
 * that the path exists, and archives read in place (see tar-index.ts); a gzip- or
 * zstd-compressed archive (`docker save | gzip`) is first inflated to a temporary file, which
 * the source's close() removes.
 */

export function describeSource(transport: string, path: string, tag: string | undefined): string {
  return tag === undefined ? `${transport}:${path}` : `${transport}:${path}:${tag}`;
}

export function requireExisting(path: string, kind: 'file' | 'directory', name: string): Promise<void> {
  // Synchronous: one stat(2) when a build opens its base image, cheaper than a round trip.
  return resolvedNow(() => {
    requireExistingNow(path, kind, name);
  });
}

function requireExistingNow(path: string, kind: 'file' | 'directory', name: string): void {
  try {
    const info = statSync(path);
    if (kind === 'directory' && !info.isDirectory())
      throw new StratumError('NOT_FOUND', `${name}: ${path} is not a directory`);
    if (kind === 'file' && !info.isFile())
      throw new StratumError('NOT_FOUND', `${name}: ${path} is not a file`);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') {
      throw new StratumError('NOT_FOUND', `${name}: ${path} does not exist`);
    }
    throw error;
  }
}

export interface OpenedArchive {
  readonly access: FileAccess;
  readonly close: () => Promise<void>;
}

/** An archive's files (inflated first when compressed; close() removes that copy). */
export async function openArchive(
  path: string,
  name: string,
  signal?: AbortSignal,
  tmpDir?: string,
): Promise<OpenedArchive> {
  await requireExisting(path, 'file', name);
  const head = Buffer.alloc(SNIFF_BYTES);
  const handle = await open(path, 'r');
  try {
    await handle.read(head, 0, SNIFF_BYTES, 0);
  } finally {
    await handle.close();
  }
  const compression = sniffCompression(head);
  const inflate = createDecompressor(compression, name);
  if (inflate === undefined) {
    return { access: tarAccess(await indexTar(path, name, signal), path), close: () => Promise.resolve() };
  }
  const dir = await makeOwnedTempDir('stratum-archive-', tmpDir);
  const close = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const inflated = join(dir, 'archive.tar');
    try {
      await pipeline(createReadStream(path), inflate, createWriteStream(inflated), signal ? { signal } : {});
    } catch (error) {
      if (isDecompressionError(error)) {
        throw new StratumError(
          'INVALID_IMAGE',
          `${name}: corrupt or truncated ${compression} archive (${error.message})`,
        );
      }
      throw error;
    }
    return { access: tarAccess(await indexTar(inflated, name, signal), path), close };
  } catch (error) {
    await close();
    throw error;
  }
}

export async function withArchive<T>(
  archive: OpenedArchive,
  use: (archive: OpenedArchive) => Promise<T>,
): Promise<T> {
  try {
    return await use(archive);
  } catch (error) {
    await archive.close();
    throw error;
  }
}
