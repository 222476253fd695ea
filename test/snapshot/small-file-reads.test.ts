import { randomBytes } from 'node:crypto';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { writeLayerEntries } from '../../src/snapshot/layer-writer.js';
import { SMALL_FILE_SLOT, SmallFileReads } from '../../src/snapshot/small-file-reads.js';
import type { TarEntry } from '../../src/snapshot/tar-entries.js';
import { latin1Path } from '../helpers/non-utf8.js';
import { listTar } from './list.js';
import { removeAll, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});

/** `count` files of sizes 1..SMALL_FILE_SLOT with distinct contents; returns their paths and contents. */
async function smallFiles(count: number): Promise<{ dir: string; names: string[]; contents: Buffer[] }> {
  const dir = await tempDir();
  dirs.push(dir);
  const names: string[] = [];
  const contents: Buffer[] = [];
  for (let index = 0; index < count; index++) {
    const size = 1 + ((index * 7919) % SMALL_FILE_SLOT);
    const content = randomBytes(size);
    const name = `f${String(index).padStart(5, '0')}`;
    await writeFile(join(dir, name), content);
    names.push(name);
    contents.push(content);
  }
  return { dir, names, contents };
}

describe('SmallFileReads', () => {
  it('gives every file in order, read by whichever thread, more files than the ring holds', async () => {
    const { dir, names, contents } = await smallFiles(1200);
    const reads = new SmallFileReads(
      names.map((name) => join(dir, name)),
      contents.map((content) => content.length),
    );
    try {
      contents.forEach((content, index) => {
        const got = reads.take(index);
        expect(got?.equals(content), names[index]).toBe(true);
        reads.release(index);
      });
    } finally {
      reads.stop();
    }
  });

  it('reads names that are not UTF-8 (paths given as bytes), on either thread', async () => {
    const { dir, names, contents } = await smallFiles(1100);
    const paths: (string | Buffer)[] = names.map((name) => join(dir, name));
    // Every 50th file gets a Latin-1 name: some are read by the worker, some by this thread.
    for (let index = 0; index < names.length; index += 50) {
      const bytes = latin1Path(dir, `caf\xe9-${index}`);
      await writeFile(bytes, contents[index]!);
      paths[index] = bytes;
    }
    const reads = new SmallFileReads(
      paths,
      contents.map((content) => content.length),
    );
    try {
      contents.forEach((content, index) => {
        expect(reads.take(index)?.equals(content), names[index]).toBe(true);
        reads.release(index);
      });
    } finally {
      reads.stop();
    }
  });

  it('a file gone or shorter than its size is not given (the caller reads it and fails)', async () => {
    const { dir, names, contents } = await smallFiles(40);
    await rm(join(dir, names[10]!));
    await truncate(join(dir, names[20]!), 0);
    const reads = new SmallFileReads(
      names.map((name) => join(dir, name)),
      contents.map((content) => content.length),
    );
    try {
      for (let index = 0; index < names.length; index++) {
        const got = reads.take(index);
        if (index === 10 || index === 20) expect(got).toBeUndefined();
        else expect(got?.equals(contents[index]!)).toBe(true);
        reads.release(index);
      }
    } finally {
      reads.stop();
    }
  });
});

describe('a layer of many small files', () => {
  function entriesOf(dir: string, names: readonly string[], contents: readonly Buffer[]): TarEntry[] {
    return names.map((name, index) => ({
      header: { name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: contents[index]!.length, mtime: 0 },
      source: join(dir, name),
    }));
  }

  it('holds every file whole and in order (read by two threads)', async () => {
    const { dir, names, contents } = await smallFiles(1500);
    const store = new BlobStore(await tempDir());
    const layer = await writeLayerEntries(entriesOf(dir, names, contents), store);
    const listed = await listTar(gunzipSync(await readFile(store.path(layer.descriptor.digest))));
    expect(listed.map((entry) => entry.name)).toEqual(names);
    expect(listed.map((entry) => entry.size)).toEqual(contents.map((content) => content.length));
    // The bytes, not only the sizes: the tar holds each file's content at its offset.
    const tar = gunzipSync(await readFile(store.path(layer.descriptor.digest)));
    let offset = 0;
    for (const content of contents) {
      offset += 512;
      expect(tar.subarray(offset, offset + content.length).equals(content)).toBe(true);
      offset += Math.ceil(content.length / 512) * 512;
    }
  });

  it('fails as it always did when a small file changed size before its turn', async () => {
    const { dir, names, contents } = await smallFiles(1100);
    await truncate(join(dir, names[700]!), 1);
    const store = new BlobStore(await tempDir());
    await expect(writeLayerEntries(entriesOf(dir, names, contents), store)).rejects.toThrow(
      /f00700: file changed size while its layer was being written/,
    );
  });
});
