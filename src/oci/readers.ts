import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StratumError, errnoCode } from '../errors.js';
import { openDockerArchiveImage } from './docker-archive-reader.js';
import { directoryAccess, tarAccess, type FileAccess } from './files.js';
import type { ImageIndexSource, ImageSource, ReadImageOptions } from './image.js';
import { openLayoutImage, openLayoutIndex, verifyLayout } from './layout-reader.js';
import { SNIFF_BYTES, createDecompressor, isDecompressionError, sniffCompression } from './compression.js';
import { indexTar } from './tar-index.js';
import { makeOwnedTempDir } from '../util/temp-dir.js';

/**
 * Entry points for the three on-disk transports. Archives are read in place (see tar-index.ts);
 * a gzip- or zstd-compressed archive (`docker save | gzip`) is first inflated to a temporary
 * file, which the source's close() removes.
 */

function describe(transport: string, path: string, tag: string | undefined): string {
  return tag === undefined ? `${transport}:${path}` : `${transport}:${path}:${tag}`;
}

async function requireExisting(path: string, kind: 'file' | 'directory', name: string): Promise<void> {
  try {
    const info = await stat(path);
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

export async function openOciLayout(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describe('oci', path, tag);
  await requireExisting(path, 'directory', name);
  return openLayoutImage(directoryAccess(path), name, tag, options);
}

/** The layout entry as a whole multi-platform image, or undefined when it is a single image. */
export async function openOciLayoutIndex(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageIndexSource | undefined> {
  const name = describe('oci', path, tag);
  await requireExisting(path, 'directory', name);
  return openLayoutIndex(directoryAccess(path), name, tag, options);
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

async function withArchive<T>(
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

export async function openOciArchive(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describe('oci-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  return withArchive(archive, ({ access, close }) => openLayoutImage(access, name, tag, options, close));
}

/** The archive's entry as a whole multi-platform image, or undefined when it is a single image. */
export async function openOciArchiveIndex(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageIndexSource | undefined> {
  const name = describe('oci-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  const index = await withArchive(archive, ({ access, close }) =>
    openLayoutIndex(access, name, tag, options, close),
  );
  if (index === undefined) await archive.close();
  return index;
}

export async function openDockerArchive(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describe('docker-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  return withArchive(archive, ({ access, close }) =>
    openDockerArchiveImage(access, name, tag, options, close),
  );
}

/** Verifies every blob an OCI layout (directory or archive) reaches; see layout-reader verifyLayout. */
export async function verifyOciLayout(
  path: string,
  options: { readonly archive?: boolean; readonly signal?: AbortSignal; readonly tmpDir?: string } = {},
): Promise<{ readonly blobs: number; readonly bytes: number }> {
  if (options.archive === true) {
    const name = `oci-archive:${path}`;
    const archive = await openArchive(path, name, options.signal, options.tmpDir);
    try {
      return await verifyLayout(archive.access, name, options.signal);
    } finally {
      await archive.close();
    }
  }
  const name = `oci:${path}`;
  await requireExisting(path, 'directory', name);
  return verifyLayout(directoryAccess(path), name, options.signal);
}
