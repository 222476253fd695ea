import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { StratumError } from '../errors.js';

/**
 * node:zlib's zstd (Node 22.15 and later, 24), found by feature detection rather than by
 * version number. @types/node 20 does not describe it, hence the local types.
 */
interface ZstdOptions {
  readonly params?: Readonly<Record<number, number>>;
  readonly chunkSize?: number;
}
interface ZlibWithZstd {
  readonly createZstdDecompress?: (options?: ZstdOptions) => Transform;
  readonly zstdCompress?: (
    buffer: Buffer,
    options: ZstdOptions,
    callback: (error: Error | null, result: Buffer) => void,
  ) => void;
  readonly constants: { readonly ZSTD_c_compressionLevel?: number };
}

const zstd = zlib as unknown as ZlibWithZstd;

export function zstdSupported(): boolean {
  return (
    typeof zstd.createZstdDecompress === 'function' &&
    typeof zstd.zstdCompress === 'function' &&
    zstd.constants.ZSTD_c_compressionLevel !== undefined
  );
}

/** The one-line error where zstd is needed and this runtime lacks it. */
export function zstdUnsupported(what: string): StratumError {
  return new StratumError(
    'UNSUPPORTED',
    `${what}: zstd compression needs node:zlib's zstd, which this Node.js (${process.version}) lacks; Node.js 22.15 or later has it (24 is the LTS)`,
  );
}

export interface ZstdCodec {
  /** One complete zstd frame of `block`, made on the threadpool. */
  compress(block: Buffer, level: number): Promise<Buffer>;
  /** A stream that decodes one or more concatenated frames, in output chunks of `chunkSize`. */
  decompressor(chunkSize: number): Transform;
}

/** The codec, or UNSUPPORTED naming `what` when this Node.js has no zstd. */
export function zstdCodec(what: string): ZstdCodec {
  const { createZstdDecompress, zstdCompress } = zstd;
  const levelParam = zstd.constants.ZSTD_c_compressionLevel;
  if (createZstdDecompress === undefined || zstdCompress === undefined || levelParam === undefined) {
    throw zstdUnsupported(what);
  }
  return {
    compress: (block, level) =>
      new Promise((resolve, reject) => {
        // One output chunk for a typical block: each chunk is a round trip to the main thread.
        // The bytes produced do not depend on it.
        const chunkSize = Math.max(64 * 1024, (block.length >>> 1) + 1024);
        zstdCompress(block, { params: { [levelParam]: level }, chunkSize }, (error, result) => {
          if (error) reject(error);
          else resolve(result);
        });
      }),
    decompressor: (chunkSize) => createZstdDecompress({ chunkSize }),
  };
}
