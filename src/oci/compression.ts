import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { StratumError } from '../errors.js';
import { GzipBlocks } from './parallel-gzip.js';
import { MediaType } from './types.js';
import { zstdCodec } from './zstd-codec.js';
import { ZstdFrames } from './zstd-frames.js';

/**
 * The one place that knows layer and archive compression: telling it from a blob's first bytes,
 * from a media type, decompressing a stream, and compressing a layer as it is written. Every
 * reader (layers, archives, ADD, the shared cache's diff_id check) and the layer writer go
 * through here, so gzip and zstd behave the same everywhere, including the UNSUPPORTED error
 * where this Node.js has no zstd.
 */

export { zstdSupported, zstdUnsupported } from './zstd-codec.js';

export type Compression = 'none' | 'gzip' | 'zstd';

/** How a writer compresses: the algorithm and its level (undefined: the algorithm's default). */
export interface CompressionSpec {
  readonly algorithm: Compression;
  readonly level?: number;
}

export const DEFAULT_COMPRESSION: CompressionSpec = { algorithm: 'gzip' };

/** gzip 6 is Docker's and Go's gzip.DefaultCompression; zstd 3 is the zstd CLI's and BuildKit's. */
const DEFAULT_LEVEL: Readonly<Record<Compression, number>> = { none: 0, gzip: 6, zstd: 3 };
const LEVELS: Readonly<Record<Compression, readonly [number, number]>> = {
  none: [0, 0],
  gzip: [1, 9],
  zstd: [1, 19],
};

export function compressionLevel(spec: CompressionSpec): number {
  return spec.level ?? DEFAULT_LEVEL[spec.algorithm];
}

/** `gzip`, `zstd`, `zstd,level=9`, `uncompressed` → a spec; `what` names the option in errors. */
export function parseCompression(text: string, what = '--compression'): CompressionSpec {
  const [name = '', ...rest] = text.split(',');
  const algorithm: Compression | undefined =
    name === 'gzip' ? 'gzip' : name === 'zstd' ? 'zstd' : name === 'uncompressed' ? 'none' : undefined;
  if (algorithm === undefined) {
    throw new StratumError(
      'USAGE',
      `${what}: unknown compression "${name}" (valid: gzip, zstd, uncompressed)`,
    );
  }
  let level: number | undefined;
  for (const option of rest) {
    const match = /^level=(-?\d+)$/.exec(option);
    const [low, high] = LEVELS[algorithm];
    if (match === null || algorithm === 'none') {
      throw new StratumError('USAGE', `${what}: unknown option "${option}" for ${name} (valid: level=N)`);
    }
    level = Number(match[1]);
    if (level < low || level > high) {
      throw new StratumError('USAGE', `${what}: ${name} level ${level} is out of range ${low}..${high}`);
    }
  }
  return level === undefined ? { algorithm } : { algorithm, level };
}

/** Fails early (UNSUPPORTED naming `what`) when this Node.js cannot write `spec`. */
export function requireCompression(spec: CompressionSpec, what: string): void {
  if (spec.algorithm === 'zstd') zstdCodec(what);
}

/** A stable short name: `gzip-6`, `zstd-3`, `uncompressed` (cache keys, logs). */
export function compressionName(spec: CompressionSpec): string {
  return spec.algorithm === 'none' ? 'uncompressed' : `${spec.algorithm}-${compressionLevel(spec)}`;
}

/**
 * The compression a layer media type declares, or undefined when the type does not say
 * (artifacts such as `application/tar+gzip` are recognised by suffix; anything else is left to
 * magic-byte detection).
 */
export function layerCompression(mediaType: string): Compression | undefined {
  switch (mediaType) {
    case MediaType.ociLayer:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar':
    case 'application/vnd.docker.image.rootfs.diff.tar':
      return 'none';
    case MediaType.ociLayerGzip:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
    case MediaType.dockerLayerGzip:
    case MediaType.dockerForeignLayerGzip:
      return 'gzip';
    case MediaType.ociLayerZstd:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd':
      return 'zstd';
    default:
      if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip')) return 'gzip';
      if (mediaType.endsWith('+zstd')) return 'zstd';
      if (mediaType.endsWith('.tar') || mediaType.endsWith('/tar')) return 'none';
      return undefined;
  }
}

/** Compression from the first bytes of a blob: gzip 1f 8b, zstd 28 b5 2f fd, else none. */
export function sniffCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd)
    return 'zstd';
  return 'none';
}

/** How many leading bytes sniffCompression needs. */
export const SNIFF_BYTES = 4;

/** The OCI layer media type for a compression, as stratum writes it. */
export function ociLayerMediaType(compression: Compression): string {
  switch (compression) {
    case 'none':
      return MediaType.ociLayer;
    case 'gzip':
      return MediaType.ociLayerGzip;
    case 'zstd':
      return MediaType.ociLayerZstd;
  }
}

/**
 * Output chunk of the decompressors. Each chunk is a round trip from the threadpool to the main
 * thread; zlib's default 16 KiB made gunzip 1.5× and zstd 2.5× slower (bench/README.md).
 */
const DECOMPRESS_CHUNK = 256 * 1024;

/**
 * A stream that decompresses `compression`, or undefined for none. zstd where this Node.js has
 * none is an UNSUPPORTED error naming `what` (the layer or archive).
 */
export function createDecompressor(compression: Compression, what: string): Transform | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip':
      return createGunzip({ chunkSize: DECOMPRESS_CHUNK });
    case 'zstd':
      return zstdCodec(what).decompressor(DECOMPRESS_CHUNK);
  }
}

/** zlib's gzip (`Z_…`) and zstd (`ZSTD_…`) errors: corrupt or truncated input, not a bug. */
export function isDecompressionError(error: unknown): error is Error {
  if (!(error instanceof Error) || !('code' in error)) return false;
  const code = String(error.code);
  return code.startsWith('Z_') || code.startsWith('ZSTD_');
}

/** Reads the first `count` bytes of a stream and returns them with a stream of everything. */
export async function peekStream(
  stream: Readable,
  count: number,
): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  while (length < count) {
    const next = await iterator.next();
    if (next.done === true) {
      ended = true;
      break;
    }
    chunks.push(next.value);
    length += next.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    let finished = ended;
    try {
      if (head.length > 0) yield head;
      while (!finished) {
        const next = await iterator.next();
        if (next.done === true) finished = true;
        else yield next.value;
      }
    } finally {
      // A consumer that stops early must release the underlying file.
      if (!finished) await iterator.return?.();
    }
  }
  return { head: head.subarray(0, count), stream: Readable.from(replay(), { objectMode: false }) };
}

/**
 * The uncompressed bytes of a stream that may be gzip, zstd or plain, told apart by its first
 * bytes (which are authoritative, as in Docker's DecompressStream: some tools label plain tars
 * `+gzip`). Errors of the input or the decompressor surface on the returned stream.
 */
export async function decompressedStream(
  input: Readable,
  what: string,
): Promise<{ readonly compression: Compression; readonly stream: Readable }> {
  const { head, stream } = await peekStream(input, SNIFF_BYTES);
  const compression = sniffCompression(head);
  let inflate: Transform | undefined;
  try {
    inflate = createDecompressor(compression, what);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  if (inflate === undefined) return { compression, stream };
  pipeline(stream, inflate).catch(() => {
    // Reported on `inflate`, which the caller reads.
  });
  return { compression, stream: inflate };
}

/** Compresses a layer as it is written; see GzipBlocks and ZstdFrames. */
export interface LayerCompressor {
  /** Takes a copy of the chunk (the caller may reuse its buffer) and resolves on backpressure. */
  write(chunk: Buffer): Promise<void>;
  /**
   * `inputCrc`: the crc32 of everything written, where `inputCrcGiven` was asked for; called
   * once everything has gone to `hashInput`.
   */
  end(inputCrc?: () => number | Promise<number>): Promise<void>;
  /** Whether `end` needs the input's crc32 (gzip with `inputCrcGiven`). */
  readonly needsInputCrc: boolean;
  /** Whether the `hashInput` option is used (gzip); otherwise the caller hashes what it writes. */
  readonly hashesInput: boolean;
}

/**
 * `output` gets the compressed bytes in order, as pieces (a stored gzip block is views of the
 * compressor's own block buffer, never copied); the compressor may reuse their memory once the
 * promise `output` returned has settled, so an output that keeps them must copy them.
 */
export function layerCompressor(
  spec: CompressionSpec,
  output: (pieces: readonly Buffer[]) => void | Promise<void>,
  options: {
    readonly threads?: number;
    /** gzip: the caller computes the crc32 of the input and passes it to `end` (see GzipBlocks) */
    readonly inputCrcGiven?: boolean;
    /** gzip: sees the input block by block (see GzipBlocks); the others ignore it */
    readonly hashInput?: (block: Buffer) => Promise<void> | undefined;
    /** gzip: where block buffers come from */
    readonly allocate?: (size: number) => Buffer;
  } = {},
): LayerCompressor {
  const threads = options.threads !== undefined ? { threads: options.threads } : {};
  switch (spec.algorithm) {
    case 'none':
      return {
        write: async (chunk) => {
          await output([Buffer.from(chunk)]);
        },
        end: () => Promise.resolve(),
        needsInputCrc: false,
        hashesInput: false,
      };
    case 'gzip': {
      const inputCrcGiven = options.inputCrcGiven === true;
      const blocks = new GzipBlocks(
        {
          level: compressionLevel(spec),
          ...threads,
          inputCrcGiven,
          reuseBlocks: true,
          ...(options.hashInput ? { hashInput: options.hashInput } : {}),
          ...(options.allocate ? { allocate: options.allocate } : {}),
        },
        output,
      );
      return {
        write: (chunk) => blocks.write(chunk),
        end: (inputCrc) => blocks.end(inputCrc),
        needsInputCrc: inputCrcGiven,
        hashesInput: options.hashInput !== undefined,
      };
    }
    case 'zstd': {
      const frames = new ZstdFrames({ level: compressionLevel(spec), ...threads }, (data) => output([data]));
      return {
        write: (chunk) => frames.write(chunk),
        end: () => frames.end(),
        needsInputCrc: false,
        hashesInput: false,
      };
    }
  }
}
