import { closeSync, openSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { writeDirectoryLayer } from '../../src/snapshot/layer-writer.js';
import { removeAll, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});

describe('layer writing streams', () => {
  it('writing a 384 MB file as a layer never holds it in memory (RSS grows by well under its size)', async () => {
    const tree = await tempDir();
    const storeDir = await tempDir();
    dirs.push(tree, storeDir);
    const size = 384 * 1024 * 1024;
    const path = join(tree, 'sparse.bin');
    closeSync(openSync(path, 'w'));
    truncateSync(path, size); // sparse: costs no disk, reads as zeros
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    try {
      const layer = await writeDirectoryLayer(tree, new BlobStore(storeDir));
      expect(layer.uncompressedSize).toBeGreaterThan(size);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    // Read-ahead (8 MB), gzip blocks in flight (4 x 1 MB plus zlib state) and stream buffers:
    // tens of MB. Holding the tar would be 384 MB.
    expect((peak - baseline) / 1024 / 1024).toBeLessThan(100);
  });
});
