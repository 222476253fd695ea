import { createReadStream, createWriteStream } from 'node:fs';
import { link, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError, errnoCode } from '../errors.js';
import { makeDirectories } from '../util/directories.js';
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
    await this.hold(digest);
    try {
      await stat(this.path(digest));
      return true;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return false;
      throw error;
    }
  }

  async size(digest: Digest): Promise<number | undefined> {
    await this.hold(digest);
    try {
      return (await stat(this.path(digest))).size;
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
    const dir = join(this.root, 'blobs', digestAlgorithm(digest));
    await makeDirectories(dir);
    const tmp = join(dir, ownedName(TEMPORARY_PREFIX, randomBytes(6).toString('hex')));
    await this.hold(digest);
    try {
      await link(file, tmp);
    } catch (error) {
      if (['EXDEV', 'EPERM', 'EACCES', 'EMLINK', 'ENOTSUP', 'ENOENT'].includes(errnoCode(error) ?? ''))
        return false;
      throw error;
    }
    await rename(tmp, this.path(digest));
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
    const digesting = new DigestingStream(expected ? digestAlgorithm(expected) : 'sha256');
    digesting.end(data);
    return this.putStream(digesting, expected, digesting);
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
      const out = createWriteStream(tmp, { flags: 'wx' });
      if (alreadyDigesting) await pipeline(source, out);
      else await pipeline(source, digesting, out);
      const digest = digesting.digest;
      if (expected !== undefined && digest !== expected) {
        throw new StratumError('DIGEST_MISMATCH', `blob content is ${digest}, expected ${expected}`);
      }
      await fsyncFile(tmp);
      // Held before it gets its name, so a sweep never sees it unclaimed.
      await this.hold(digest);
      await makeDirectories(join(this.root, 'blobs', digestAlgorithm(digest)));
      await rename(tmp, this.path(digest));
      return { digest, size: digesting.size };
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }
}

/** Partial blobs are `.tmp-<pid>-<random>` beside the finished ones. */
const TEMPORARY_PREFIX = '.tmp-';

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function blobReadError(error: unknown, digest: Digest, root: string): Error {
  if (errnoCode(error) === 'ENOENT') {
    return new StratumError('NOT_FOUND', `${root}: blob ${digest} is missing`);
  }
  return error instanceof Error ? error : new Error(String(error));
}
