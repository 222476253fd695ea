import { addAbortSignal, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VerifyingStream } from './digest.js';
import type { Descriptor } from './types.js';

/**
 * Wraps a blob's byte stream so that it errors at its end unless digest and size match the
 * descriptor. Errors of the underlying file (or an abort) surface on the returned stream:
 * pipeline() destroys every stage with the first error, and the caller reads the last stage.
 */
export function verifiedStream(
  source: Readable,
  descriptor: Descriptor,
  what: string,
  signal?: AbortSignal,
): Readable {
  const verifier = new VerifyingStream(descriptor.digest, descriptor.size, what);
  if (signal) addAbortSignal(signal, verifier);
  // A consumer that stops early (a gunzip that failed first, a peek at the head) detaches its
  // listeners; a digest error raised after that must not crash the process. Readers that are
  // still attached (for await, pipeline) receive the error as usual.
  verifier.on('error', () => undefined);
  pipeline(source, verifier).catch(() => {
    // Already reported to whoever reads `verifier`.
  });
  return verifier;
}

/** Reads a verified stream fully; for small JSON blobs only. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
