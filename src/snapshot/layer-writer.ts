import { createHash } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { StratumError } from '../errors.js';
import { digestPieces, type BlobStore, type BlobWriter } from '../oci/blob-store.js';
import { displayName, fsPath } from '../util/file-names.js';
import { OffThreadDigest, sharedBuffer } from '../oci/hash-worker.js';
import {
  DEFAULT_COMPRESSION,
  compressionLevel,
  layerCompressor,
  ociLayerMediaType,
  type CompressionSpec,
} from '../oci/compression.js';
import { DEFAULT_BLOCK_SIZE, gzipWhole } from '../oci/parallel-gzip.js';
import type { Descriptor, Digest } from '../oci/types.js';
import { diffSnapshots } from './diff.js';
import { emptySnapshot, scanTree } from './scan.js';
import { layerEntries, type EntryOptions, type TarEntry } from './tar-entries.js';
import { SMALL_FILE_SLOT, SmallFileReads } from './small-file-reads.js';
import { END_OF_ARCHIVE, encodeHeader, encodeHeaderInto, paddingFor } from './tar-header.js';
import type { LayerDiff } from './types.js';

export interface LayerWriteOptions extends EntryOptions {
  /** default gzip level 6, what Docker's Go gzip.DefaultCompression means (oci/compression.ts) */
  readonly compression?: CompressionSpec;
  /** compressed blocks in flight (see oci/parallel-gzip.ts, oci/zstd-frames.ts) */
  readonly compressionThreads?: number;
  /**
   * Hash the tar (its diff_id) and sum the gzip crc on the hashing worker (oci/hash-worker.ts);
   * the blob's sha256 stays here. Default: for layers with at least OFF_THREAD_HASH_BYTES of
   * file content.
   */
  readonly offThreadHash?: boolean;
  readonly signal?: AbortSignal;
  /**
   * Told the layer's digests before its blob is stored, where they are known first (a small
   * layer, made whole): a step adopts its upperdir as the layer meanwhile, so that the two
   * flushes (the blob's, the placement journal's) overlap.
   */
  readonly beforeStore?: (layer: WrittenLayer) => void;
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
/**
 * Files up to this size are read with synchronous calls when the tar reaches them, not ahead on
 * the threadpool: for them the cost is the calls, not the bytes (a FileHandle open, read and
 * close took ~70 µs of main thread each, 1.5 s for a RUN's 20,000 small files; openSync,
 * readSync and closeSync take ~10 µs), as extraction found for writing them (extract.ts). A
 * layer with many of them has them read by a worker thread beside this one (small-file-reads.ts).
 */
const TINY_FILE = SMALL_FILE_SLOT;
/** Read-ahead budget: how many bytes of small files may be buffered ahead of the tar writer. */
const READ_AHEAD_BYTES = 4 * 1024 * 1024;
const READ_AHEAD_FILES = 32;
/** Output is batched so the hash and gzip stages see few large chunks, not many 512-byte ones. */
const BATCH = 256 * 1024;
/**
 * From this much file content on, a layer is hashed on the worker thread: below it the hashes
 * cost less than the worker's start (~20 ms of the other core, once per process) and the
 * round trips.
 */
const OFF_THREAD_HASH_BYTES = 16 * 1024 * 1024;

function changedWhileWriting(path: string): StratumError {
  return new StratumError('IO', `${displayName(path)}: file changed size while its layer was being written`);
}

async function openNoFollow(path: string): Promise<FileHandle> {
  return open(fsPath(path), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
}

/**
 * Buffers for whole small files, by power-of-two size class. Their content is always copied into
 * a tar batch before the next entry, so they can always be reused (bounded: a few per class).
 */
class SmallFilePool {
  private readonly free = new Map<number, Buffer[]>();

  take(size: number): Buffer {
    const capacity = size <= 4096 ? 4096 : 2 ** Math.ceil(Math.log2(size));
    return (this.free.get(capacity)?.pop() ?? Buffer.allocUnsafe(capacity)).subarray(0, size);
  }

  give(buffer: Buffer): void {
    const capacity = buffer.byteLength <= 4096 ? 4096 : 2 ** Math.ceil(Math.log2(buffer.byteLength));
    if (buffer.byteOffset !== 0 || buffer.buffer.byteLength !== capacity) return; // not one of ours
    const full = Buffer.from(buffer.buffer, 0, capacity);
    const list = this.free.get(capacity);
    if (list === undefined) this.free.set(capacity, [full]);
    else if (list.length < 8) list.push(full);
  }
}

async function readWhole(path: string, size: number, pool: SmallFilePool): Promise<Buffer> {
  const handle = await openNoFollow(path);
  try {
    const buffer = pool.take(size);
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

function readWholeSync(path: string, size: number, pool: SmallFilePool): Buffer {
  const fd = openSync(fsPath(path), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const buffer = pool.take(size);
    let offset = 0;
    while (offset < size) {
      const bytesRead = readSync(fd, buffer, offset, size - offset, offset);
      if (bytesRead === 0) throw changedWhileWriting(path);
      offset += bytesRead;
    }
    return buffer;
  } finally {
    closeSync(fd);
  }
}

/**
 * Where chunk buffers come from. When the consumer is done with a yielded chunk by the time it
 * asks for the next one (the layer writer hashes and copies synchronously), buffers are reused:
 * fresh 1 MiB buffers per chunk are garbage that V8 collects late and that showed up as peak
 * RSS. A stream consumer keeps references, so `tarStream` allocates fresh ones.
 */
interface BufferSource {
  readonly reuse: boolean;
  take(size: number): Buffer;
  give(buffer: Buffer): void;
}

function bufferSource(reuse: boolean): BufferSource {
  const free = new Map<number, Buffer[]>();
  return {
    reuse,
    take: (size) => free.get(size)?.pop() ?? Buffer.allocUnsafe(size),
    give: (buffer) => {
      if (!reuse) return;
      const list = free.get(buffer.length);
      if (list === undefined) free.set(buffer.length, [buffer]);
      else if (list.length < 4) list.push(buffer);
    },
  };
}

async function* readChunks(path: string, size: number, buffers: BufferSource): AsyncGenerator<Buffer> {
  const handle = await openNoFollow(path);
  try {
    let position = 0;
    const readAt = async (at: number): Promise<Buffer> => {
      const length = Math.min(CHUNK, size - at);
      const buffer = buffers.take(CHUNK).subarray(0, length);
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
      buffers.give(Buffer.from(current.buffer, current.byteOffset, CHUNK));
    }
  } finally {
    await handle.close();
  }
}

/**
 * The tar bytes of a list of entries, produced lazily. Small files are read ahead concurrently
 * (bounded by READ_AHEAD_*), so the threadpool keeps reading while the consumer hashes and
 * compresses; headers, small files and padding are packed into BATCH-sized chunks; large files
 * stream in CHUNK-sized reads. Nothing larger than the read-ahead budget is ever held.
 */
async function* tarChunks(
  entries: readonly TarEntry[],
  buffers: BufferSource,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  const ahead = new Map<number, Promise<Buffer>>();
  const pool = new SmallFilePool();
  const tiny = tinyFileReads(entries);
  let aheadBytes = 0;
  let scan = 0;
  const fillReadAhead = (from: number): void => {
    if (scan < from) scan = from;
    while (scan < entries.length && ahead.size < READ_AHEAD_FILES && aheadBytes < READ_AHEAD_BYTES) {
      const entry = entries[scan]!;
      const size = entry.header.size;
      if (entry.source !== undefined && entry.header.type === 'file' && size > TINY_FILE) {
        if (size > SMALL_FILE) break; // large files stream in order; the window stops here
        const read = readWhole(entry.source, size, pool);
        read.catch(() => undefined);
        ahead.set(scan, read);
        aheadBytes += size;
      }
      scan++;
    }
  };

  let batch = buffers.take(BATCH);
  let fill = 0;
  /** Copies into the batch; yields each batch that fills up. */
  function* add(data: Buffer): Generator<Buffer> {
    let offset = 0;
    while (offset < data.length) {
      const take = Math.min(data.length - offset, BATCH - fill);
      data.copy(batch, fill, offset, offset + take);
      fill += take;
      offset += take;
      if (fill === BATCH) {
        yield batch;
        if (!buffers.reuse) batch = buffers.take(BATCH);
        fill = 0;
      }
    }
  }
  /**
   * Copies `data` in when it fits without filling the batch (no batch is due then), the
   * common case; false when `add` is needed. A generator per small file and per padding cost
   * more main thread than the copy itself (20,000 files: three each).
   */
  function put(data: Buffer): boolean {
    if (fill + data.length >= BATCH) return false;
    data.copy(batch, fill);
    fill += data.length;
    return true;
  }
  function* flush(): Generator<Buffer> {
    if (fill === 0) return;
    yield batch.subarray(0, fill);
    if (!buffers.reuse) batch = buffers.take(BATCH);
    fill = 0;
  }

  try {
    for (let index = 0; index < entries.length; index++) {
      if (signal?.aborted === true) throw new StratumError('ABORTED', 'layer write aborted');
      const entry = entries[index]!;
      fillReadAhead(index + 1);
      // Straight into the batch where it is one plain block and fits (the batch is not always
      // block-aligned: a large file's chunks bypass it); otherwise made apart and copied in.
      if (BATCH - fill >= 512 && encodeHeaderInto(entry.header, batch, fill)) {
        fill += 512;
        if (fill === BATCH) {
          yield batch;
          if (!buffers.reuse) batch = buffers.take(BATCH);
          fill = 0;
        }
      } else {
        const header = encodeHeader(entry.header);
        if (!put(header)) yield* add(header);
      }
      const size = entry.header.size;
      if (entry.source === undefined || entry.header.type !== 'file' || size === 0) continue;
      const prefetched = ahead.get(index);
      if (prefetched !== undefined) {
        ahead.delete(index);
        const content = await prefetched;
        aheadBytes -= size;
        if (!put(content)) yield* add(content);
        pool.give(content);
      } else if (size <= TINY_FILE) {
        const shared = tiny?.reads.take(tiny.index[index]!);
        if (shared !== undefined) {
          if (!put(shared)) yield* add(shared);
          tiny!.reads.release(tiny!.index[index]!);
        } else {
          // Not read by SmallFileReads (or not at all): read here, and fail here if it must.
          const content = readWholeSync(entry.source, size, pool);
          if (!put(content)) yield* add(content);
          pool.give(content);
          if (tiny !== undefined) tiny.reads.release(tiny.index[index]!);
        }
      } else if (size <= SMALL_FILE) {
        const content = await readWhole(entry.source, size, pool);
        if (!put(content)) yield* add(content);
        pool.give(content);
      } else {
        yield* flush();
        for await (const chunk of readChunks(entry.source, size, buffers)) yield chunk;
      }
      const pad = paddingFor(size);
      if (pad > 0 && fill + pad < BATCH) {
        batch.fill(0, fill, fill + pad);
        fill += pad;
      } else if (pad > 0) yield* add(END_OF_ARCHIVE.subarray(0, pad));
    }
    yield* add(END_OF_ARCHIVE);
    yield* flush();
  } finally {
    tiny?.reads.stop();
    // Let any read still in flight finish before its file handle is forgotten.
    await Promise.allSettled(ahead.values());
  }
}

/**
 * From this many tiny files on, a layer's tiny files are read by two threads (SmallFileReads);
 * below it the worker's start would cost more than it saves.
 */
const SHARED_READS_FROM = 1000;

/** The layer's tiny files for SmallFileReads, with each entry's index among them. */
function tinyFileReads(
  entries: readonly TarEntry[],
): { readonly reads: SmallFileReads; readonly index: Int32Array } | undefined {
  const paths: (string | Buffer)[] = [];
  const sizes: number[] = [];
  const index = new Int32Array(entries.length);
  entries.forEach((entry, at) => {
    const size = entry.header.size;
    if (entry.source === undefined || entry.header.type !== 'file' || size === 0 || size > TINY_FILE) return;
    index[at] = paths.length;
    paths.push(fsPath(entry.source));
    sizes.push(size);
  });
  if (paths.length < SHARED_READS_FROM) return undefined;
  return { reads: new SmallFileReads(paths, sizes), index };
}

/** The uncompressed tar of a list of entries as a stream. */
export function tarStream(entries: readonly TarEntry[], signal?: AbortSignal): Readable {
  return Readable.from(tarChunks(entries, bufferSource(false), signal), {
    objectMode: false,
    highWaterMark: 1024 * 1024,
  });
}

/** The uncompressed tar of a diff, in layer order (for tests, `analyze` and uncompressed sinks). */
export function layerTarStream(diff: LayerDiff, options: LayerWriteOptions = {}): Readable {
  return tarStream(layerEntries(diff, options), options.signal);
}

/**
 * A layer this small (a COPY of a few sources, a compiled binary: every step of an edit loop) is
 * made whole and synchronously: its tar in memory, gzip'd in one call (gzipWhole, the same bytes
 * as the blocks), its blob written with one writev and one fsync. Streamed, its thread-pool round
 * trips (reads, blocks, writes, flush) took 5-10 ms of a step that has ~1 ms of work.
 */
const SMALL_LAYER_BYTES = 256 * 1024;
const SMALL_LAYER_ENTRIES = 256;

/** The tar of `entries` as one Buffer: tarChunks' bytes, read with synchronous calls. */
function smallTar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pool = new SmallFilePool();
  for (const entry of entries) {
    parts.push(encodeHeader(entry.header));
    const size = entry.header.size;
    if (entry.source === undefined || entry.header.type !== 'file' || size === 0) continue;
    const content = readWholeSync(entry.source, size, pool);
    parts.push(Buffer.from(content));
    pool.give(content);
    const pad = paddingFor(size);
    if (pad > 0) parts.push(END_OF_ARCHIVE.subarray(0, pad));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/**
 * Writes a layer in one streaming pass: tar → sha256 (diff_id) → gzip or zstd → sha256 and
 * size → blob store. Nothing is buffered beyond the read-ahead and the blocks in flight.
 */
export async function writeLayerEntries(
  entries: readonly TarEntry[],
  store: BlobStore,
  options: LayerWriteOptions = {},
): Promise<WrittenLayer> {
  let contentBytes = 0;
  for (const entry of entries) if (entry.source !== undefined) contentBytes += entry.header.size;
  const compression = options.compression ?? DEFAULT_COMPRESSION;
  if (
    compression.algorithm === 'gzip' &&
    entries.length <= SMALL_LAYER_ENTRIES &&
    contentBytes <= SMALL_LAYER_BYTES &&
    options.offThreadHash !== true
  ) {
    if (options.signal?.aborted === true) throw new StratumError('ABORTED', 'layer write aborted');
    const tar = smallTar(entries);
    if (tar.length < DEFAULT_BLOCK_SIZE) {
      const pieces = gzipWhole(tar, compressionLevel(compression));
      const written: WrittenLayer = {
        descriptor: { mediaType: ociLayerMediaType('gzip'), ...digestPieces(pieces) },
        diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}`,
        uncompressedSize: tar.length,
      };
      options.beforeStore?.(written);
      await store.putDigestedPiecesNow(pieces, written.descriptor);
      return written;
    }
  }
  const offThreadHash = options.offThreadHash ?? contentBytes >= OFF_THREAD_HASH_BYTES;
  return writeTarChunks(tarChunks(entries, bufferSource(true), options.signal), store, {
    ...options,
    offThreadHash,
  });
}

/**
 * The same for a tar given as chunks (a layer rewritten block by block). Each chunk is copied into
 * a compression block (and hashed, where the compressor does not hash its blocks) before the
 * next is asked for, so the source may reuse buffers.
 */
export async function writeTarChunks(
  chunks: AsyncIterable<Buffer>,
  store: BlobStore,
  options: Pick<LayerWriteOptions, 'compression' | 'compressionThreads' | 'offThreadHash'> = {},
): Promise<WrittenLayer> {
  const offThread = options.offThreadHash === true;
  // Off the main thread, the tar's crc32 (gzip's trailer) is summed beside its sha256.
  const tarDigest = offThread ? new OffThreadDigest(['sha256', 'crc32']) : undefined;
  const diffHash = offThread ? undefined : createHash('sha256');
  let uncompressedSize = 0;
  // Made before the store is opened: zstd where this Node.js has none throws here.
  const compression = options.compression ?? DEFAULT_COMPRESSION;
  let blob: BlobWriter | undefined;
  const compressor = layerCompressor(compression, (pieces) => blob!.write(pieces), {
    ...(options.compressionThreads !== undefined ? { threads: options.compressionThreads } : {}),
    inputCrcGiven: offThread,
    // gzip hands the worker its blocks, in shared memory, to hash in place: no copy per chunk.
    ...(tarDigest ? { hashInput: (block: Buffer) => tarDigest.update(block), allocate: sharedBuffer } : {}),
  });
  /** The tar digest fed chunk by chunk here, where the compressor does not feed it blocks. */
  const chunkDigest = compressor.hashesInput ? undefined : tarDigest;
  let diffId: Digest;
  try {
    // The blob's sha256 on this thread, from the pieces as they are (a stored block's are views
    // of the block): with the tar's sha256 and crc32 on the worker, the two threads' shares
    // measured closest (bench/README.md), and nothing is copied for it.
    blob = await store.createWriter();
    for await (const chunk of chunks) {
      if (diffHash !== undefined) diffHash.update(chunk);
      else if (chunkDigest !== undefined) await chunkDigest.update(chunk);
      uncompressedSize += chunk.length;
      await compressor.write(chunk);
    }
    if (tarDigest === undefined) {
      diffId = `sha256:${diffHash!.digest('hex')}`;
      await compressor.end();
    } else {
      // Asked for once the compressor has handed the worker its last block (in end()): the
      // last block compresses while the worker finishes; only the trailer waits for the crc.
      let results: Promise<readonly (string | number)[]> | undefined;
      const tarResults = (): Promise<readonly (string | number)[]> => (results ??= tarDigest.results());
      await compressor.end(
        compressor.needsInputCrc ? () => tarResults().then(([, crc]) => Number(crc)) : undefined,
      );
      const [tarHex] = await tarResults();
      diffId = `sha256:${String(tarHex)}`;
    }
  } catch (error) {
    tarDigest?.abandon();
    await blob?.abort();
    throw error;
  }
  const stored = await blob.finish();
  return {
    descriptor: {
      mediaType: ociLayerMediaType(compression.algorithm),
      digest: stored.digest,
      size: stored.size,
    },
    diffId,
    uncompressedSize,
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
): Promise<WrittenLayer & { readonly entries: number }> {
  const scanOptions = {
    ...(options.exclude ? { exclude: options.exclude } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const tree = await scanTree(dir, scanOptions);
  const diff = await diffSnapshots(emptySnapshot(dir), tree, dir);
  return { ...(await writeLayer(diff, store, options)), entries: diff.changes.length };
}
