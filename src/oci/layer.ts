import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { StratumError } from '../errors.js';
import { VerifyingStream } from './digest.js';
import type { ImageSource } from './image.js';
import { layerCompression, sniffCompression, type Compression } from './media-types.js';
import type { Descriptor, Digest } from './types.js';

/**
 * A layer blob → its uncompressed tar stream. The compression is taken from the blob's first
 * bytes (gzip 1f 8b, zstd 28 b5 2f fd), which are authoritative (Docker's DecompressStream does
 * the same; some tools label uncompressed layers `+gzip`); the media type is only used to
 * explain an error. zstd needs node:zlib's zstd support (Node 22.15+); on Node 20 it is an
 * UNSUPPORTED error rather than a garbled tar.
 */

interface ZstdZlib {
  createZstdDecompress?: () => Transform;
}

export function zstdSupported(): boolean {
  return typeof (zlib as unknown as ZstdZlib).createZstdDecompress === 'function';
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

function decompressor(compression: Compression, what: string): Transform | undefined {
  switch (compression) {
    case 'none':
      return undefined;
    case 'gzip':
      return zlib.createGunzip();
    case 'zstd': {
      const create = (zlib as unknown as ZstdZlib).createZstdDecompress;
      if (create === undefined) {
        throw new StratumError(
          'UNSUPPORTED',
          `${what}: zstd-compressed layer, and this Node.js (${process.version}) has no zstd in node:zlib (needs 22.15 or later)`,
        );
      }
      return create();
    }
  }
}

export interface LayerTarOptions {
  /** When given, the uncompressed bytes must hash to this (the config's diff_id). */
  readonly diffId?: Digest;
  readonly signal?: AbortSignal;
}

/** Detected compression of a layer blob, by magic bytes. */
export async function layerBlobCompression(
  source: ImageSource,
  descriptor: Descriptor,
  signal?: AbortSignal,
): Promise<Compression> {
  const blob = await source.openBlob(descriptor, signal);
  try {
    const { head } = await peekStream(blob, 4);
    return sniffCompression(head);
  } finally {
    // Only the head was wanted: a verification error the rest of the blob may still raise
    // belongs to whoever reads it in full later, not to this peek.
    blob.on('error', () => undefined);
    blob.destroy();
  }
}

/**
 * The uncompressed tar of a layer. The compressed bytes are verified against the descriptor,
 * and with `diffId` the uncompressed bytes against it; either mismatch errors the stream.
 */
export async function openLayerTar(
  source: ImageSource,
  descriptor: Descriptor,
  options: LayerTarOptions = {},
): Promise<Readable> {
  const blob = await source.openBlob(descriptor, options.signal);
  const { head, stream } = await peekStream(blob, 4);
  const what = `${source.name}: layer ${descriptor.digest}`;
  const compression = sniffCompression(head);
  const declared = layerCompression(descriptor.mediaType);
  let inflate: Transform | undefined;
  try {
    inflate = decompressor(compression, what);
  } catch (error) {
    stream.destroy();
    throw error;
  }
  if (declared === 'zstd' && compression !== 'zstd' && compression !== 'none') {
    stream.destroy();
    throw new StratumError(
      'INVALID_IMAGE',
      `${what}: media type ${descriptor.mediaType} but the content is ${compression}`,
    );
  }
  const stages: (Readable | Transform)[] = [stream];
  if (inflate) stages.push(inflate);
  if (options.diffId !== undefined)
    stages.push(new VerifyingStream(options.diffId, undefined, `${what} (uncompressed, diff_id)`));
  if (stages.length === 1) return stream;
  const last = stages[stages.length - 1] as Transform;
  pipeline(stages).catch(() => {
    // Reported on `last`, which the caller reads.
  });
  return last;
}
