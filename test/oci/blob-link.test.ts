import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { sha256Digest } from '../../src/oci/digest.js';

/**
 * An image written to a layout links each blob from the build's store (BlobStore.linkFrom): to
 * its name at once where nothing is there, and over a file already there (torn, or someone
 * else's: the caller found its size wrong) by a link beside it renamed over it.
 */
describe('linking a blob into a store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-blob-link-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('links to the digest name; replaces a wrong file there; leaves no temporary', async () => {
    const bytes = Buffer.from('{"a":1}');
    const digest = sha256Digest(bytes);
    const source = join(dir, 'source');
    writeFileSync(source, bytes);
    const store = new BlobStore(join(dir, 'store'));
    expect(await store.linkFrom(source, digest)).toBe(true);
    expect(lstatSync(store.path(digest)).ino).toBe(lstatSync(source).ino);

    const torn = new BlobStore(join(dir, 'torn'));
    await torn.putBytes(Buffer.from('{"b":2}')); // makes the directory
    writeFileSync(torn.path(digest), '{"a"'); // a torn copy under the digest's name
    expect(await torn.linkFrom(source, digest)).toBe(true);
    expect(readFileSync(torn.path(digest))).toEqual(bytes);
    expect(lstatSync(torn.path(digest)).ino).toBe(lstatSync(source).ino);
    for (const store of ['store', 'torn'])
      expect(readdirSync(join(dir, store, 'blobs', 'sha256')).filter((name) => name.startsWith('.'))).toEqual(
        [],
      );

    // Nothing to link from: the caller copies instead.
    expect(await store.linkFrom(join(dir, 'missing'), sha256Digest(Buffer.from('x')))).toBe(false);
  });
});
