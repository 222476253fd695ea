import {
  closeSync,
  createReadStream,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writevSync,
} from 'node:fs';
import { open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError, errnoCode } from '../errors.js';
import { makeDirectories, makeDirectoriesSync } from '../util/directories.js';
import { Lease } from '../util/leases.js';
import { isAbandoned, ownedName } from '../util/owner.js';
import { DigestingStream, VerifyingStream, digestAlgorithm, digestHex } from './digest.js';
import type { Digest } from './types.js';

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/**
 * A content-addressed store laid out as an OCI layout's `blobs/<alg>/<hex>`.
 *
 * Writes go to a temporary file in the same directory and are renamed into place, so a crash
 * never leaves a partial blob under a digest name, and two writers of the same blob both
 * succeed (rename is atomic; the content is the same by definition).
 *
 * A shared store (the local image store's, a layer cache's) is `leased`: every blob checked for
 * or written through this object is held in its lease (in `leaseDir`, see leases.ts) before
 * it looks, until `releaseLease()` or the process's end, so a `cache prune` or `rmi` elsewhere
 * never removes a blob a running build or copy relies on. A plain output layout (`oci:DIR`)
 * is not leased.
 */
export class BlobStore {
  private readonly lease: Lease | undefined;

  constructor(
    readonly root: string,
    /**
     * Where the leases of this store live, for a shared store: outside `root` when `root` is a
     * layout (the local image store's), so the layout holds nothing but the layout.
     */
    readonly leaseDir?: string,
  ) {
    this.lease = leaseDir === undefined ? undefined : new Lease(leaseDir);
  }

  /** Lets go of every blob held (a build, once its outputs are written). */
  async releaseLease(): Promise<void> {
    await this.lease?.release();
  }

  /**
   * Holds `digest` until `releaseLease()` (leased stores only): from here on no sweep removes
   * it, and whether it exists can be trusted.
   */
  async hold(digest: Digest): Promise<void> {
    await this.lease?.hold(digest);
  }

  path(digest: Digest): string {
    return join(this.root, 'blobs', digestAlgorithm(digest), digestHex(digest));
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  /**
   * The blob's size, or undefined when it is not here. A stat(2) made synchronously: asked for
   * every layer of every cache hit and of every image written, where the asynchronous call was
   * a thread-pool round trip.
   */
  async size(digest: Digest): Promise<number | undefined> {
    await this.hold(digest);
    try {
      return statSync(this.path(digest)).size;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Opens a blob for reading; with `verify`, the stream errors at its end unless digest and size match. */
  read(digest: Digest, options: { verify?: boolean; size?: number } = {}): Readable {
    const file = createReadStream(this.path(digest));
    if (options.verify !== true) return file;
    const verifier = new VerifyingStream(digest, options.size, `blob ${this.path(digest)}`);
    file.on('error', (error) => verifier.destroy(blobReadError(error, digest, this.root)));
    return file.pipe(verifier);
  }

  async readBytes(digest: Digest, options: { verify?: boolean; size?: number } = {}): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.read(digest, options)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Hard-links `file`, a blob already verified by another content-addressed store, in as
   * `digest`. Returns false when linking is impossible (another filesystem, no permission), so
   * the caller copies instead.
   */
  async linkFrom(file: string, digest: Digest): Promise<boolean> {
    // Synchronous metadata calls (an image written to a layout links each of its blobs).
    const dir = join(this.root, 'blobs', digestAlgorithm(digest));
    makeDirectoriesSync(dir);
    await this.hold(digest);
    const cannotLink = (error: unknown): boolean =>
      ['EXDEV', 'EPERM', 'EACCES', 'EMLINK', 'ENOTSUP', 'ENOENT'].includes(errnoCode(error) ?? '');
    // Straight to its name where nothing is there (a link is atomic: one call, not two). Something
    // there already (a torn or foreign file the caller found the wrong size) is replaced whole,
    // by a link made beside it and renamed over it.
    try {
      linkSync(file, this.path(digest));
      return true;
    } catch (error) {
      if (cannotLink(error)) return false;
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
    const tmp = join(dir, ownedName(TEMPORARY_PREFIX, randomBytes(6).toString('hex')));
    try {
      linkSync(file, tmp);
    } catch (error) {
      if (cannotLink(error)) return false;
      throw error;
    }
    renameSync(tmp, this.path(digest));
    return true;
  }

  /**
   * Removes partial blobs whose writer no longer runs (a killed build's); returns their bytes.
   * A running writer's are kept: their names carry its PID (see owner.ts).
   */
  async removeAbandonedTemporaries(): Promise<number> {
    let freed = 0;
    const blobs = join(this.root, 'blobs');
    for (const algorithm of await readdir(blobs).catch(() => [])) {
      const dir = join(blobs, algorithm);
      for (const name of await readdir(dir).catch(() => [])) {
        if (!isAbandoned(name, TEMPORARY_PREFIX)) continue;
        const info = await stat(join(dir, name)).catch(() => undefined);
        await rm(join(dir, name), { force: true });
        freed += info?.size ?? 0;
      }
    }
    return freed;
  }

  /** Stores bytes whose digest the caller may or may not know; returns what was stored. */
  async putBytes(data: Buffer, expected?: Digest): Promise<BlobInfo> {
    // A manifest, a config, an index: written whole with synchronous calls.
    if (data.length <= SMALL_BLOB_BYTES && (expected === undefined || digestAlgorithm(expected) === 'sha256'))
      return this.putPiecesNow([data], expected);
    const digesting = new DigestingStream(expected ? digestAlgorithm(expected) : 'sha256');
    digesting.end(data);
    return this.putStream(digesting, expected, digesting);
  }

  /**
   * A new blob written piece by piece (the layer writer's compressed output), hashed on the way:
   * the same temporary file, flushing and rename as putStream, without a stream between. Each
   * `write` resolves when its pieces are written, so the caller may reuse their memory then
   * (the layer writer's stored gzip blocks are views of its block buffers).
   */
  async createWriter(): Promise<BlobWriter> {
    const dir = join(this.root, 'blobs', 'sha256');
    await makeDirectories(dir);
    const tmp = join(dir, ownedName(TEMPORARY_PREFIX, randomBytes(6).toString('hex')));
    const handle = await open(tmp, 'wx');
    return new BlobWriter(this, tmp, handle);
  }

  /**
   * A small blob whose bytes are all at hand, written with synchronous calls (one writev, one
   * fsync): the same temporary file, durability and rename as putStream, for a layer of a few
   * kilobytes, where each asynchronous call was a thread-pool round trip.
   */
  async putPiecesNow(pieces: readonly Buffer[], expected?: Digest): Promise<BlobInfo> {
    const info = digestPieces(pieces);
    if (expected !== undefined && info.digest !== expected) {
      throw new StratumError('DIGEST_MISMATCH', `blob content is ${info.digest}, expected ${expected}`);
    }
    return this.putDigestedPiecesNow(pieces, info);
  }

  /**
   * putPiecesNow for pieces whose digest the caller has just computed from these same buffers
   * (digestPieces): the layer writer knows it before storing, and the bytes are not hashed twice.
   */
  async putDigestedPiecesNow(pieces: readonly Buffer[], info: BlobInfo): Promise<BlobInfo> {
    const { digest, size } = info;
    const dir = join(this.root, 'blobs', 'sha256');
    makeDirectoriesSync(dir);
    const tmp = join(dir, ownedName(TEMPORARY_PREFIX, randomBytes(6).toString('hex')));
    try {
      const fd = openSync(tmp, 'wx');
      try {
        for (let written = 0; written < size;) written += writevSync(fd, unwritten(pieces, written));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      await this.hold(digest);
      renameSync(tmp, this.path(digest));
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
    return { digest, size };
  }

  /** Names a finished temporary file `digest` (held first, so a sweep never sees it unclaimed). */
  async adopt(tmp: string, digest: Digest): Promise<void> {
    await this.hold(digest);
    await makeDirectories(join(this.root, 'blobs', digestAlgorithm(digest)));
    await rename(tmp, this.path(digest));
  }

  /**
   * Streams `source` into the store. With `expected`, the bytes are verified and a mismatch
   * leaves nothing behind. Without it, the digest is computed on the way.
   */
  async putStream(
    source: Readable,
    expected?: Digest,
    alreadyDigesting?: DigestingStream,
  ): Promise<BlobInfo> {
    // The source may fail (an aborted layer write destroys it) before pipeline listens, while
    // the directory is made: unheard, its 'error' event would end the process. pipeline still
    // sees the error, from the stream's state.
    source.on('error', () => undefined);
    const tmpDir = join(this.root, 'blobs', expected ? digestAlgorithm(expected) : 'sha256');
    await makeDirectories(tmpDir);
    const tmp = join(tmpDir, ownedName(TEMPORARY_PREFIX, randomBytes(6).toString('hex')));
    const digesting =
      alreadyDigesting ?? new DigestingStream(expected ? digestAlgorithm(expected) : 'sha256');
    try {
      // Flushed to disk as it is written and once more at its end (FlushingFile): complete on
      // disk before it gets its name, so a crash of the machine never leaves a torn blob under
      // a digest.
      const handle = await open(tmp, 'wx');
      try {
        const out = new FlushingFile(handle);
        if (alreadyDigesting) await pipeline(source, out);
        else await pipeline(source, digesting, out);
      } finally {
        await handle.close();
      }
      const digest = digesting.digest;
      if (expected !== undefined && digest !== expected) {
        throw new StratumError('DIGEST_MISMATCH', `blob content is ${digest}, expected ${expected}`);
      }
      await this.adopt(tmp, digest);
      return { digest, size: digesting.size };
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }
}

/** See BlobStore.createWriter. */
export class BlobWriter {
  /**
   * On this thread, from the pieces where they are: the layer writer keeps the hashing worker
   * for the tar's sha256 and crc32, and hashing the blob here measured faster than copying it
   * to the worker as well (bench/README.md).
   */
  private readonly hash = createHash('sha256');
  private readonly writes: FlushingWrites;
  private bytes = 0;
  /** The last write; each starts after the one before, so they land in order. */
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly store: BlobStore,
    private readonly tmp: string,
    private readonly handle: FileHandle,
  ) {
    this.writes = new FlushingWrites(handle);
  }

  /** Hashes and appends `pieces`; resolves once they are written (their memory is free then). */
  write(pieces: readonly Buffer[]): Promise<void> {
    for (const piece of pieces) {
      this.bytes += piece.length;
      this.hash.update(piece);
    }
    const written = this.tail.then(() => this.writes.write(pieces));
    this.tail = written;
    // Marked handled here: the caller has the same promise, and finish() awaits the tail.
    written.catch(() => undefined);
    return written;
  }

  /** Waits for the writes, makes the file durable and names it by its digest. */
  async finish(): Promise<BlobInfo> {
    let hex: string;
    try {
      await this.tail;
      await this.writes.finish();
      hex = this.hash.digest('hex');
    } catch (error) {
      await this.abort();
      throw error;
    }
    await this.close();
    const digest: Digest = `sha256:${hex}`;
    try {
      await this.store.adopt(this.tmp, digest);
    } catch (error) {
      await rm(this.tmp, { force: true });
      throw error;
    }
    return { digest, size: this.bytes };
  }

  /** Leaves nothing behind (a failed layer write). */
  async abort(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.close().catch(() => undefined);
    await rm(this.tmp, { force: true });
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** The sha256 digest and size of a blob given as pieces. */
export function digestPieces(pieces: readonly Buffer[]): BlobInfo {
  const hash = createHash('sha256');
  let size = 0;
  for (const piece of pieces) {
    hash.update(piece);
    size += piece.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Blobs up to this size that putBytes writes with synchronous calls (putPiecesNow). */
const SMALL_BLOB_BYTES = 1024 * 1024;

/** Partial blobs are `.tmp-<pid>-<random>` beside the finished ones. */
const TEMPORARY_PREFIX = '.tmp-';

/** Bytes written between two early flushes of a blob (see FlushingFile). */
const FLUSH_EVERY = 16 * 1024 * 1024;

/**
 * Appends to a new blob file and flushes it before it finishes: an fdatasync starts every
 * FLUSH_EVERY bytes (one at a time, while writing goes on) and an fsync ends it. Flushing a
 * 300 MB layer only after writing it cost ~0.25 s after the hashing and compression were done;
 * flushed as it goes, the disk works while they run and the last fsync finds little left.
 */
class FlushingWrites {
  private unflushed = 0;
  private flushing: Promise<void> | undefined;

  constructor(private readonly handle: FileHandle) {}

  /** Writes `pieces` whole (one writev where it can), then maybe starts an early flush. */
  async write(pieces: readonly Buffer[]): Promise<void> {
    let left = pieces.filter((piece) => piece.length > 0);
    let bytes = 0;
    for (const piece of left) bytes += piece.length;
    while (left.length > 0) {
      let written =
        left.length === 1
          ? (await this.handle.write(left[0]!, 0, left[0]!.length)).bytesWritten
          : (await this.handle.writev(left)).bytesWritten;
      // A short write (rare on a regular file): go on from where it stopped.
      while (left.length > 0 && written >= left[0]!.length) written -= left.shift()!.length;
      if (written > 0) left = [left[0]!.subarray(written), ...left.slice(1)];
    }
    this.unflushed += bytes;
    if (this.unflushed >= FLUSH_EVERY && this.flushing === undefined) {
      this.unflushed = 0;
      const flushing = this.handle.datasync().finally(() => {
        this.flushing = undefined;
      });
      // Awaited in finish; a failure there fails the write.
      flushing.catch(() => undefined);
      this.flushing = flushing;
    }
  }

  async finish(): Promise<void> {
    await this.flushing;
    await this.handle.sync();
  }
}

/** FlushingWrites as the end of a stream pipeline. */
class FlushingFile extends Writable {
  private readonly writes: FlushingWrites;

  constructor(handle: FileHandle) {
    super();
    this.writes = new FlushingWrites(handle);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writes.write([chunk]).then(() => {
      callback();
    }, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.writes.finish().then(() => {
      callback();
    }, callback);
  }
}

function blobReadError(error: unknown, digest: Digest, root: string): Error {
  if (errnoCode(error) === 'ENOENT') {
    return new StratumError('NOT_FOUND', `${root}: blob ${digest} is missing`);
  }
  return error instanceof Error ? error : new Error(String(error));
}

/** What of `pieces` is left after the first `done` bytes (a short writev). */
function unwritten(pieces: readonly Buffer[], done: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = done;
  for (const piece of pieces) {
    if (skip >= piece.length) {
      skip -= piece.length;
      continue;
    }
    rest.push(skip > 0 ? piece.subarray(skip) : piece);
    skip = 0;
  }
  return rest;
}
