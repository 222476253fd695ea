import { mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { peekStream } from '../oci/compression.js';
import { extractLayerAuto } from '../snapshot/index.js';

/**
 * `stratum build -`, as `docker build -`: standard input is either a tar (plain or gzip) holding
 * the context, with the Dockerfile inside it, or a Dockerfile alone, with an empty context.
 * Told apart by the gzip magic or the tar magic `ustar` at byte 257.
 */
export async function contextFromStream(
  input: Readable,
  dir: string,
  signal?: AbortSignal,
): Promise<{ readonly dockerfile?: Buffer }> {
  await mkdir(dir, { recursive: true });
  const { head, stream } = await peekStream(input, 262);
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const tar = head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
  if (gzip || tar) {
    await extractLayerAuto(stream, dir, {
      layerName: 'the context tar on standard input',
      ...(signal ? { signal } : {}),
    });
    return {};
  }
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return { dockerfile: Buffer.concat(chunks) };
}
