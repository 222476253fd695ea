import type { BlobStore } from '../oci/blob-store.js';
import { decompressedStream } from '../oci/compression.js';
import type { Descriptor } from '../oci/types.js';
import { writeTarChunks, type LayerWriteOptions, type WrittenLayer } from './layer-writer.js';
import { clampHeaderTime, paddingFor } from './tar-header.js';

/**
 * SOURCE_DATE_EPOCH applied to a layer stratum wrote without it: every header's mtime after the
 * epoch becomes the epoch, and whiteouts get the epoch (as tar-entries.ts writes them under an
 * epoch), block by block. The result is byte for byte the layer the step would have written
 * with the epoch, so a cached layer serves a build with any epoch without running its step
 * again (BuildKit applies the epoch at export for the same reason: its cache holds layers as
 * they were made). Only layers of stratum's own writer (tar-header.ts) are meant: the blocks
 * are rewritten in place, never re-encoded.
 */
export async function reclampLayer(
  store: BlobStore,
  layer: Descriptor,
  epoch: number,
  options: Pick<LayerWriteOptions, 'compression' | 'compressionThreads' | 'signal'> = {},
): Promise<WrittenLayer> {
  const { stream } = await decompressedStream(store.read(layer.digest), `layer ${layer.digest}`);
  return writeTarChunks(clampedBlocks(stream, epoch, options.signal), store, options);
}

const BLOCK = 512;

/** The tar's blocks, headers clamped; data blocks pass through untouched. */
async function* clampedBlocks(
  input: AsyncIterable<Buffer>,
  epoch: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  /** Bytes of entry data (with padding) still to pass through before the next header. */
  let dataLeft = 0;
  /** A PAX header's data, collected to read its `size` and `path` records. */
  let paxData: Buffer[] | undefined;
  let paxLeft = 0;
  let pax: { size?: number; path?: string } = {};
  let ended = false;
  for await (const chunk of input) {
    signal?.throwIfAborted();
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const out: Buffer[] = [];
    let offset = 0;
    while (pending.length - offset >= BLOCK || (dataLeft > 0 && pending.length > offset)) {
      if (dataLeft > 0) {
        const take = Math.min(dataLeft, pending.length - offset);
        const piece = pending.subarray(offset, offset + take);
        if (paxData !== undefined && paxLeft > 0) {
          paxData.push(Buffer.from(piece.subarray(0, Math.min(paxLeft, piece.length))));
          paxLeft -= Math.min(paxLeft, piece.length);
        }
        out.push(piece);
        offset += take;
        dataLeft -= take;
        if (dataLeft === 0 && paxData !== undefined) {
          pax = parsePax(Buffer.concat(paxData));
          paxData = undefined;
        }
        continue;
      }
      const block = Buffer.from(pending.subarray(offset, offset + BLOCK));
      offset += BLOCK;
      if (ended || block.every((byte) => byte === 0)) {
        ended = true; // the end-of-archive blocks and any padding after them
        out.push(block);
        continue;
      }
      const typeflag = block[156];
      const name = pax.path ?? block.toString('latin1', 0, 100).replace(/\0.*$/s, '');
      // A PAX header is named "<dir>/PaxHeaders.0/<base>" after its entry: a whiteout's matches too.
      const whiteout = /(?:^|\/)\.wh\.[^/]*$/.test(name);
      let size = clampHeaderTime(block, epoch, whiteout);
      if (typeflag === 0x78) {
        paxData = [];
        paxLeft = size;
      } else {
        if (pax.size !== undefined) size = pax.size;
        pax = {};
      }
      // Only regular files (and PAX headers) carry data in stratum's layers.
      if (typeflag !== 0x30 && typeflag !== 0 && typeflag !== 0x78) size = 0;
      out.push(block);
      dataLeft = size + paddingFor(size);
    }
    pending = pending.subarray(offset);
    if (out.length > 0) yield Buffer.concat(out);
  }
  if (pending.length > 0) yield pending;
}

/** The `size` and `path` records of a PAX extended header ("%d key=value\n"). */
function parsePax(data: Buffer): { size?: number; path?: string } {
  const result: { size?: number; path?: string } = {};
  let position = 0;
  while (position < data.length) {
    const space = data.indexOf(0x20, position);
    if (space < 0) break;
    const length = Number.parseInt(data.toString('latin1', position, space), 10);
    if (!(length > 0)) break;
    const record = data.toString('latin1', space + 1, position + length - 1);
    const equals = record.indexOf('=');
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === 'size') result.size = Number(value);
    if (key === 'path') result.path = value;
    position += length;
  }
  return result;
}
