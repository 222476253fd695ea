import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError } from '../errors.js';
import {
  SNIFF_BYTES,
  createDecompressor,
  layerCompression,
  peekStream,
  sniffCompression,
  type Compression,
} from './compression.js';
import { VerifyingStream } from './digest.js';
import type { ImageSource } from './image.js';
import type { Descriptor, Digest } from './types.js';

/**
 * A layer blob → its uncompressed tar stream. The compression is taken from the blob's first
 * bytes (see compression.ts); the media type is only used to explain an error. zstd where
 * node:zlib has none (Node 20) is an UNSUPPORTED error rather than a garbled tar.
 */

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
    const { head } = await peekStream(blob, SNIFF_BYTES);
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
  const { head, stream } = await peekStream(blob, SNIFF_BYTES);
  const what = `${source.name}: layer ${descriptor.digest}`;
  const compression = sniffCompression(head);
  const declared = layerCompression(descriptor.mediaType);
  let inflate: Transform | undefined;
  try {
    inflate = createDecompressor(compression, what);
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
