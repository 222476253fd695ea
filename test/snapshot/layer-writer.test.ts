import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  link,
  lutimes,
  mkdir,
  readdir,
  symlink,
  utimes,
  writeFile,
  readFile,
} from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/types.js';
import { writeDirectoryLayer, writeLayer, layerTarStream } from '../../src/snapshot/layer-writer.js';
import { scanTree, emptySnapshot } from '../../src/snapshot/scan.js';
import { diffSnapshots } from '../../src/snapshot/diff.js';
import { requireTool, isRoot } from '../helpers/system.js';
import { collect, removeAll, tempDir } from './helpers.js';
import { listTar } from './list.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});
async function newDir(): Promise<string> {
  const dir = await tempDir();
  dirs.push(dir);
  return dir;
}

const T = 1_600_000_000;

/**
 * A fixed tree, made in code with explicit modes, owners and times, created in the given order so
 * that inode order and umask can differ between two builds of it.
 */
async function fixedTree(root: string, order: 'forward' | 'reverse', mtimeOffset = 0): Promise<void> {
  const steps: (() => Promise<void>)[] = [
    async () => {
      await mkdir(join(root, 'etc'), { recursive: true });
      await writeFile(join(root, 'etc/hostname'), 'stratum\n');
    },
    async () => {
      await mkdir(join(root, 'usr/bin'), { recursive: true });
      await writeFile(join(root, 'usr/bin/tool'), '#!/bin/sh\necho tool\n');
    },
    async () => {
      await mkdir(join(root, 'usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on'), {
        recursive: true,
      });
      await writeFile(
        join(
          root,
          'usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on',
          'and-a-long-file-name-too-so-that-pax-is-needed.txt',
        ),
        'long\n',
      );
    },
    async () => {
      await mkdir(join(root, 'data'), { recursive: true });
      await writeFile(join(root, 'data/ünïcødé.txt'), 'non-ascii\n');
    },
  ];
  for (const step of order === 'forward' ? steps : [...steps].reverse()) await step();
  await symlink('../usr/bin/tool', join(root, 'etc/tool-link'));
  await link(join(root, 'usr/bin/tool'), join(root, 'usr/bin/tool-hard'));
  const modes: [string, number][] = [
    ['etc', 0o755],
    ['etc/hostname', 0o644],
    ['usr', 0o755],
    ['usr/bin', 0o755],
    ['usr/bin/tool', 0o4755],
    ['usr/share', 0o755],
    ['usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on', 0o1777],
    [
      'usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/and-a-long-file-name-too-so-that-pax-is-needed.txt',
      0o644,
    ],
    ['data', 0o700],
    ['data/ünïcødé.txt', 0o600],
  ];
  for (const [path, mode] of modes) await chmod(join(root, path), mode);
  if (isRoot) await chown(join(root, 'data'), 1000, 1000);
  if (isRoot) await chown(join(root, 'data/ünïcødé.txt'), 1000, 1000);
  // Children first so directory times stick.
  await lutimes(join(root, 'etc/tool-link'), T + mtimeOffset, T + mtimeOffset + 0.5);
  for (const [path] of [...modes].reverse()) {
    await utimes(join(root, path), T + mtimeOffset + 0.25, T + mtimeOffset + 0.75);
  }
}

describe('layer writer', () => {
  // Owners are part of the digest and only root can give files uid 1000 (CI runs as root).
  it.runIf(isRoot)(
    'golden digest: the fixed layer built in code always has the same diff_id and blob digest',
    async () => {
      const root = await newDir();
      const store = new BlobStore(await newDir());
      await fixedTree(root, 'forward');
      const layer = await writeDirectoryLayer(root, store);
      expect(layer.descriptor.mediaType).toBe(MediaType.ociLayerGzip);
      // Pinned. The diff_id covers our tar bytes; the blob digest also pins node's zlib output,
      // so a Node upgrade that changes deflate shows up here rather than as silent cache misses.
      // (Changed in issue 26: with a PAX path the ustar name field keeps only the name's ASCII
      // bytes, `data/ncd.txt` for `data/ünïcødé.txt`, as Go's archive/tar and BuildKit write it.)
      const expected = {
        diffId: 'sha256:7bad85b87e132e919b0e7cb7ee0bfe22cec06c3fb73c8721eff282fa623924bd',
        digest: 'sha256:57553bea37486a05cb3641496c76f128b430e3be70af7fbfe1f824844bf3ae65',
      };
      expect(layer.diffId).toBe(expected.diffId);
      expect(layer.descriptor.digest).toBe(expected.digest);
      // Hashed on the worker thread (big layers are), the same digests.
      const offThread = await writeDirectoryLayer(root, store, { offThreadHash: true });
      expect(offThread.diffId).toBe(expected.diffId);
      expect(offThread.descriptor.digest).toBe(expected.digest);
      const blob = await readFile(store.path(layer.descriptor.digest));
      expect(blob.length).toBe(layer.descriptor.size);
      expect(sha256Digest(gunzipSync(blob))).toBe(layer.diffId);
      expect(gunzipSync(blob).length).toBe(layer.uncompressedSize);
    },
  );

  it('reproducible: same tree gives the same digests whatever creation order, umask or newer mtimes (SOURCE_DATE_EPOCH)', async () => {
    const a = await newDir();
    const b = await newDir();
    await fixedTree(a, 'forward');
    const oldUmask = process.umask(0o077);
    try {
      await fixedTree(b, 'reverse', 5000);
    } finally {
      process.umask(oldUmask);
    }
    const store = new BlobStore(await newDir());
    const epoch = T - 100;
    const la = await writeDirectoryLayer(a, store, { sourceDateEpoch: epoch });
    const lb = await writeDirectoryLayer(b, store, { sourceDateEpoch: epoch });
    expect(lb.diffId).toBe(la.diffId);
    expect(lb.descriptor.digest).toBe(la.descriptor.digest);
    // Without the epoch the mtimes differ, so the layers must differ: the test can fail.
    const ua = await writeDirectoryLayer(a, store);
    const ub = await writeDirectoryLayer(b, store);
    expect(ub.diffId).not.toBe(ua.diffId);
  });

  it('entries: sorted, parents first, names without ./, dirs end with /, empty uname/gname, whole seconds, relative hard links, PAX for long and non-ASCII names', async () => {
    const root = await newDir();
    await fixedTree(root, 'reverse');
    const diff = await diffSnapshots(emptySnapshot(root), await scanTree(root));
    const entries = await listTar(await collect(layerTarStream(diff)));
    expect(entries.map((e) => e.name)).toEqual([
      'data/',
      'data/ünïcødé.txt',
      'etc/',
      'etc/hostname',
      'etc/tool-link',
      'usr/',
      'usr/bin/',
      'usr/bin/tool',
      'usr/bin/tool-hard',
      'usr/share/',
      'usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/',
      'usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/and-a-long-file-name-too-so-that-pax-is-needed.txt',
    ]);
    for (const entry of entries) {
      expect(entry.uname).toBe('');
      expect(entry.gname).toBe('');
      expect(entry.mtime).toBe(T);
    }
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get('usr/bin/tool')).toMatchObject({ type: 'file', mode: 0o4755, size: 20 });
    expect(byName.get('usr/bin/tool-hard')).toMatchObject({
      type: 'link',
      linkname: 'usr/bin/tool',
      size: 0,
    });
    expect(byName.get('etc/tool-link')).toMatchObject({ type: 'symlink', linkname: '../usr/bin/tool' });
    expect(byName.get('usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/')).toMatchObject({
      mode: 0o1777,
    });
    if (isRoot) expect(byName.get('data/')).toMatchObject({ uid: 1000, gid: 1000, mode: 0o700 });
  });

  it('GNU tar reads the layer and lists the same entries', async () => {
    if (!requireTool('tar', 'tar')) return;
    const root = await newDir();
    await fixedTree(root, 'forward');
    const diff = await diffSnapshots(emptySnapshot(root), await scanTree(root));
    const tarFile = join(await newDir(), 'layer.tar');
    await writeFile(tarFile, await collect(layerTarStream(diff)));
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tarFile], { encoding: 'utf8' });
    const lines = listing.trim().split('\n');
    expect(lines).toHaveLength(12);
    expect(lines[0]).toMatch(/^drwx------ \d+\/\d+\s+0 2020-09-13 \d\d:\d\d data\/$/);
    expect(listing).toMatch(/-rwsr-xr-x 0\/0\s+20 .* usr\/bin\/tool\n/);
    expect(listing).toMatch(/hrwsr-xr-x 0\/0\s+0 .* usr\/bin\/tool-hard link to usr\/bin\/tool\n/);
    expect(listing).toMatch(/lrwxrwxrwx 0\/0\s+0 .* etc\/tool-link -> \.\.\/usr\/bin\/tool\n/);
    expect(listing).toContain('data/ünïcødé.txt');
    expect(listing).toContain('and-a-long-file-name-too-so-that-pax-is-needed.txt');
    const extracted = await newDir();
    execFileSync('tar', ['-xf', tarFile, '-C', extracted]);
    expect(await readFile(join(extracted, 'usr/bin/tool'), 'utf8')).toBe('#!/bin/sh\necho tool\n');
  });
});

/** Pseudo-random bytes that are the same on every run: sha256 in counter mode. */
function seededBytes(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let at = 0, counter = 0; at < length; at += 32, counter++) {
    createHash('sha256').update(`${seed}:${counter}`).digest().copy(out, at);
  }
  return out;
}

/**
 * A tree that takes every path of the writer: random blocks (stored, views of the block buffer),
 * a block half random and half text (deflated), a large text file (streamed in chunks), files
 * read ahead, and 1,200 tiny files (read by SmallFileReads' two threads).
 */
async function storedBlocksTree(root: string): Promise<void> {
  await mkdir(join(root, 'tiny'), { recursive: true });
  await mkdir(join(root, 'text'), { recursive: true });
  await writeFile(join(root, 'random.bin'), seededBytes('random', 3 * 1024 * 1024 + 12_345));
  const text = (index: number, length: number): Buffer =>
    Buffer.from(`line ${index} of some layer text\n`.repeat(Math.ceil(length / 24))).subarray(0, length);
  await writeFile(join(root, 'mixed.bin'), Buffer.concat([seededBytes('mixed', 700_000), text(0, 900_000)]));
  await writeFile(join(root, 'text/large.txt'), text(1, 600_000));
  for (let i = 0; i < 20; i++) await writeFile(join(root, `text/t${i}.txt`), text(i, 17_000 + 997 * i));
  for (let i = 0; i < 1200; i++) await writeFile(join(root, `tiny/f${i}`), text(i, 10 + (i % 90)));
  execFileSync('chmod', ['-R', 'u=rwX,go=rX', root]);
  execFileSync('find', [root, '-exec', 'touch', '-h', '-d', '@1600000000', '{}', '+']);
}

describe('layer writer, stored and deflated blocks', () => {
  it.runIf(isRoot)(
    'golden digests: the same bytes whether hashed here or on the worker and with any number of compression threads',
    async () => {
      const root = await newDir();
      await storedBlocksTree(root);
      const store = new BlobStore(await newDir());
      // Pinned from the writer before stored blocks became views of the block buffer and the
      // blob went through BlobWriter: the bytes must never depend on how they are produced.
      const expected = {
        diffId: 'sha256:4f6fe284c21385e38baf34a8ba7d269888a5274f31e138eb2690eb87926aba1b',
        digest: 'sha256:ffa7ec7003ad298a5aa4fd5a152e6c408558d04baeb2aaee48e520a7e7312ab6',
      };
      for (const options of [
        { offThreadHash: false, compressionThreads: 1 },
        { offThreadHash: true, compressionThreads: 1 },
        { offThreadHash: true, compressionThreads: 3 },
      ]) {
        const layer = await writeDirectoryLayer(root, store, options);
        expect({ diffId: layer.diffId, digest: layer.descriptor.digest }, JSON.stringify(options)).toEqual(
          expected,
        );
      }
      const blob = await readFile(store.path(expected.digest as `sha256:${string}`));
      expect(sha256Digest(blob)).toBe(expected.digest);
      expect(sha256Digest(gunzipSync(blob))).toBe(expected.diffId);
    },
  );
});

describe('layer writer, small layers made whole', () => {
  it('a small layer (made whole, synchronously) has the digests the streamed writer gives it', async () => {
    const store = new BlobStore(await newDir());
    for (const shape of ['text', 'binary', 'many', 'long names', 'links'] as const) {
      const root = await newDir();
      if (shape === 'text') await writeFile(join(root, 'hello.c'), 'int main(void) { return 0; }\n');
      if (shape === 'binary') await writeFile(join(root, 'hello'), randomBytes(16_000)); // stored
      if (shape === 'many') {
        for (let i = 0; i < 200; i++) await writeFile(join(root, `f${i}`), `file ${i}\n`.repeat(i));
      }
      if (shape === 'long names') {
        const deep = join(root, 'a'.repeat(90), 'b'.repeat(90));
        await mkdir(deep, { recursive: true });
        await writeFile(join(deep, `${'c'.repeat(120)}.txt`), 'long\n');
      }
      if (shape === 'links') {
        await writeFile(join(root, 'target'), 'linked\n');
        await link(join(root, 'target'), join(root, 'hard'));
        await symlink('target', join(root, 'soft'));
        await mkdir(join(root, 'empty'));
      }
      const whole = await writeDirectoryLayer(root, store);
      // Hashed on the worker: the streamed path, whatever the size.
      const streamed = await writeDirectoryLayer(root, store, { offThreadHash: true });
      expect(
        { diffId: whole.diffId, digest: whole.descriptor.digest, size: whole.descriptor.size },
        shape,
      ).toEqual({
        diffId: streamed.diffId,
        digest: streamed.descriptor.digest,
        size: streamed.descriptor.size,
      });
      expect(whole.uncompressedSize).toBe(streamed.uncompressedSize);
      const blob = await readFile(store.path(whole.descriptor.digest));
      expect(sha256Digest(blob)).toBe(whole.descriptor.digest);
      expect(sha256Digest(gunzipSync(blob))).toBe(whole.diffId);
    }
    // Nothing but finished blobs is left in the store.
    expect(
      (await readdir(join(store.root, 'blobs', 'sha256'))).filter((name) => name.startsWith('.')),
    ).toEqual([]);
  });

  it("a small layer's digests are told before its blob is stored, and are the stored blob's", async () => {
    const store = new BlobStore(await newDir());
    const root = await newDir();
    await writeFile(join(root, 'hello.c'), 'int main(void) { return 1; }\n');
    const told: { digest: string; diffId: string; storedYet: boolean }[] = [];
    const written = await writeDirectoryLayer(root, store, {
      beforeStore: (layer) =>
        told.push({
          digest: layer.descriptor.digest,
          diffId: layer.diffId,
          storedYet: existsSync(store.path(layer.descriptor.digest)),
        }),
    });
    expect(told).toEqual([{ digest: written.descriptor.digest, diffId: written.diffId, storedYet: false }]);
    const blob = await readFile(store.path(written.descriptor.digest));
    expect(sha256Digest(blob)).toBe(written.descriptor.digest);
    expect(blob.length).toBe(written.descriptor.size);
    expect(sha256Digest(gunzipSync(blob))).toBe(written.diffId);
  });

  it('a small layer whose file shrank while it was read fails, leaving no temporary blob', async () => {
    const root = await newDir();
    await writeFile(join(root, 'f'), 'x'.repeat(1000));
    const tree = await scanTree(root);
    const diff = await diffSnapshots(emptySnapshot(root), tree, root);
    await writeFile(join(root, 'f'), 'x');
    const store = new BlobStore(await newDir());
    await expect(writeLayer(diff, store)).rejects.toThrow(/changed size while its layer was being written/);
    expect(await readdir(join(store.root, 'blobs', 'sha256')).catch(() => [])).toEqual([]);
  });
});

describe.runIf(isRoot)('layer writer on a full disk', () => {
  it('rejects with ENOSPC while blocks are still being written, leaving no temporary blob and no stray error', async () => {
    const root = await newDir();
    await storedBlocksTree(root);
    const small = await newDir();
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    expect(mounted.status, String(mounted.stderr)).toBe(0);
    const unhandled: unknown[] = [];
    const onUnhandled = (error: unknown): void => {
      unhandled.push(error);
    };
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
    try {
      for (const offThreadHash of [false, true]) {
        const outcome = await writeDirectoryLayer(root, new BlobStore(small), { offThreadHash }).then(
          () => 'written',
          (error: unknown) => (error as { code?: string }).code,
        );
        expect(outcome).toBe('ENOSPC');
        expect(execFileSync('find', [small, '-type', 'f'], { encoding: 'utf8' })).toBe('');
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      process.off('uncaughtException', onUnhandled);
      spawnSync('umount', [small]);
    }
  });
});

/**
 * Issue 26: a SIGHUP during a layer write once ended in an unhandled 'error' event and a stack
 * trace, with no clean-up. An abort at any point of a write rejects with ABORTED and leaves no
 * partial blob.
 */
describe('layer writer aborted', () => {
  it('rejects with ABORTED wherever the abort comes, leaving no temporary blob', async () => {
    const root = await newDir();
    await fixedTree(root, 'forward');
    const storeDir = await newDir();
    const store = new BlobStore(storeDir);
    const unhandled: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      unhandled.push(error);
    };
    process.on('uncaughtException', onUncaught);
    try {
      // 0: aborted before the write starts; then after 1, 2, ... turns of the event loop.
      for (const turns of [0, 1, 2, 3, 5, 8]) {
        const controller = new AbortController();
        if (turns === 0) controller.abort();
        else {
          let left = turns;
          const tick = (): void => {
            if (--left === 0) controller.abort();
            else setImmediate(tick);
          };
          setImmediate(tick);
        }
        const written = writeDirectoryLayer(root, store, {
          signal: controller.signal,
          offThreadHash: turns % 2 === 1,
        }).then(
          () => 'written',
          (error: unknown) => (error as { code?: string }).code,
        );
        const outcome = await written;
        // A write that finished before the abort is fine; one that did not says ABORTED.
        expect(['written', 'ABORTED'], `after ${turns} turns`).toContain(outcome);
        if (turns === 0) expect(outcome).toBe('ABORTED');
      }
      // Let any stray 'error' event fire.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
      const leftovers = execFileSync('find', [storeDir, '-name', '.tmp-*'], { encoding: 'utf8' });
      expect(leftovers).toBe('');
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
