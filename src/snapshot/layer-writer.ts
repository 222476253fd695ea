import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import { DigestingStream } from '../oci/digest.js';
import { MediaType, type Descriptor, type Digest } from '../oci/types.js';
import { diffSnapshots } from './diff.js';
import { ParallelGzip } from './parallel-gzip.js';
import { emptySnapshot, scanTree } from './scan.js';
import { layerEntries, type EntryOptions, type TarEntry } from './tar-entries.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from './tar-header.js';
import type { LayerDiff } from './types.js';

export interface LayerWriteOptions extends EntryOptions {
  /** gzip level; default 6, what Docker's Go gzip.DefaultCompression means */
  readonly gzipLevel?: number;
  /** parallel gzip blocks in flight (see parallel-gzip.ts) */
  readonly gzipThreads?: number;
  readonly signal?: AbortSignal;
}

export interface WrittenLayer {
  /** the compressed blob, as it goes into a manifest */
  readonly descriptor: Descriptor;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry */
  readonly diffId: Digest;
  readonly uncompressedSize: number;
}

/** Files up to this size are read whole and ahead of time; larger ones stream in chunks. */
const SMALL_FILE = 256 * 1024;
const CHUNK = 1024 * 1024;
/** Read-ahead budget: how many bytes of small files may be buffered ahead of the tar writer. */
const READ_AHEAD_BYTES = 8 * 1024 * 1024;
const READ_AHEAD_FILES = 64;
/** Output is batched so the hash and gzip stages see few large chunks, not many 512-byte ones. */
const BATCH = 256 * 1024;

function changedWhileWriting(path: string): StratumError {
  return new StratumError('IO', `${path}: file changed size while its layer was being written`);
}

async function openNoFollow(path: string): Promise<FileHandle> {
  return open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
}

async function readWhole(path: string, size: number): Promise<Buffer> {
  const handle = await openNoFollow(path);
  try {
    const buffer = Buffer.allocUnsafe(size);
    let offset = 0;
    while (offset < size) {
      const { bytesRead } = await handle.read(buffer, offset, size - offset, offset);
      if (bytesRead === 0) throw changedWhileWriting(path);
      offset += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

async function* readChunks(path: string, size: number): AsyncGenerator<Buffer> {
  const handle = await openNoFollow(path);
  try {
    let position = 0;
    const readAt = async (at: number): Promise<Buffer> => {
      const length = Math.min(CHUNK, size - at);
      const buffer = Buffer.allocUnsafe(length);
      let offset = 0;
      while (offset < length) {
        const { bytesRead } = await handle.read(buffer, offset, length - offset, at + offset);
        if (bytesRead === 0) throw changedWhileWriting(path);
        offset += bytesRead;
      }
      return buffer;
    };
    // Double buffering: the next chunk is being read while this one moves down the pipeline.
    let next: Promise<Buffer> | undefined = readAt(0);
    while (next !== undefined) {
      const current: Buffer = await next;
      position += current.length;
      next = position < size ? readAt(position) : undefined;
      next?.catch(() => undefined);
      yield current;
    }
  } finally {
    await handle.close();
  }
}

/**
 * The tar bytes of a list of entries, produced lazily. Small files are read ahead concurrently
 * (bounded by READ_AHEAD_*), so the threadpool keeps reading while the pipeline hashes and
 * compresses; nothing larger than the read-ahead budget is ever held.
 */
export function tarStream(entries: readonly TarEntry[], signal?: AbortSignal): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    const ahead = new Map<number, Promise<Buffer>>();
    let aheadBytes = 0;
    let scan = 0;
    const fillReadAhead = (from: number): void => {
      if (scan < from) scan = from;
      while (scan < entries.length && ahead.size < READ_AHEAD_FILES && aheadBytes < READ_AHEAD_BYTES) {
        const entry = entries[scan]!;
        const size = entry.header.size;
        if (entry.source !== undefined && entry.header.type === 'file' && size > 0) {
          if (size > SMALL_FILE) break; // large files stream in order; stop the window here
          const read = readWhole(entry.source, size);
          read.catch(() => undefined);
          ahead.set(scan, read);
          aheadBytes += size;
        }
        scan++;
      }
    };

    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = (): Buffer => {
      const out = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      return out;
    };
    const add = (buffer: Buffer): boolean => {
      batch.push(buffer);
      batchBytes += buffer.length;
      return batchBytes >= BATCH;
    };

    try {
      for (let index = 0; index < entries.length; index++) {
        if (signal?.aborted === true) throw new StratumError('ABORTED', 'layer write aborted');
        const entry = entries[index]!;
        fillReadAhead(index + 1);
        if (add(encodeHeader(entry.header))) yield flush();
        const size = entry.header.size;
        if (entry.source === undefined || entry.header.type !== 'file' || size === 0) continue;
        const prefetched = ahead.get(index);
        if (prefetched !== undefined) {
          ahead.delete(index);
          const content = await prefetched;
          aheadBytes -= size;
          if (add(content)) yield flush();
        } else {
          if (batchBytes > 0) yield flush();
          for await (const chunk of readChunks(entry.source, size)) yield chunk;
        }
        const pad = paddingFor(size);
        if (pad > 0 && add(END_OF_ARCHIVE.subarray(0, pad))) yield flush();
      }
      add(END_OF_ARCHIVE);
      yield flush();
    } finally {
      // Let any read still in flight finish before its file handle is forgotten.
      await Promise.allSettled(ahead.values());
    }
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: 4 * 1024 * 1024 });
}

/** The uncompressed tar of a diff, in layer order (for tests, `analyze` and uncompressed sinks). */
export function layerTarStream(diff: LayerDiff, options: LayerWriteOptions = {}): Readable {
  return tarStream(layerEntries(diff, options), options.signal);
}

/**
 * Writes a layer in one streaming pass: tar → sha256 (diff_id) → gzip → sha256 and size →
 * blob store. Nothing is buffered beyond the read-ahead and the gzip blocks in flight.
 */
export async function writeLayerEntries(
  entries: readonly TarEntry[],
  store: BlobStore,
  options: LayerWriteOptions = {},
): Promise<WrittenLayer> {
  const tar = tarStream(entries, options.signal);
  const uncompressed = new DigestingStream('sha256');
  const gzip = new ParallelGzip({
    ...(options.gzipLevel !== undefined ? { level: options.gzipLevel } : {}),
    ...(options.gzipThreads !== undefined ? { threads: options.gzipThreads } : {}),
  });
  const compressed = new DigestingStream('sha256');
  const signalOption = options.signal ? { signal: options.signal } : {};
  const [, blob] = await Promise.all([
    pipeline(tar, uncompressed, gzip, compressed, signalOption),
    store.putStream(compressed, undefined, compressed),
  ]);
  return {
    descriptor: { mediaType: MediaType.ociLayerGzip, digest: blob.digest, size: blob.size },
    diffId: uncompressed.digest,
    uncompressedSize: uncompressed.size,
  };
}

/** Writes the layer for a diff (see diffSnapshots) into the store. */
export async function writeLayer(
  diff: LayerDiff,
  store: BlobStore,
  options: LayerWriteOptions = {},
): Promise<WrittenLayer> {
  return writeLayerEntries(layerEntries(diff, options), store, options);
}

/**
 * Writes every entry under `dir` as one layer: a base image from a directory, a test image, a
 * COPY --link layer. The same tree gives the same digests whatever its inode order.
 */
export async function writeDirectoryLayer(
  dir: string,
  store: BlobStore,
  options: LayerWriteOptions & { readonly exclude?: (relPath: string) => boolean } = {},
): Promise<WrittenLayer> {
  const scanOptions = {
    ...(options.exclude ? { exclude: options.exclude } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const tree = await scanTree(dir, scanOptions);
  const diff = await diffSnapshots(emptySnapshot(dir), tree, dir);
  return writeLayer(diff, store, options);
}
