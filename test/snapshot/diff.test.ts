import { execFileSync } from 'node:child_process';
import {
  chmod,
  chown,
  cp,
  link,
  lstat,
  mkdir,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { diffSnapshots, isEmptyDiff } from '../../src/snapshot/diff.js';
import { scanTree } from '../../src/snapshot/scan.js';
import { createTreeBaseline } from '../../src/snapshot/tree-baseline.js';
import type { LayerDiff } from '../../src/snapshot/types.js';
import { isRoot } from '../helpers/system.js';
import { removeAll, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});

/** A small lower tree, then one step's mutation; returns the diff as "kind path" lines. */
async function stepDiff(
  mutate: (root: string) => Promise<void>,
): Promise<{ diff: LayerDiff; lines: string[] }> {
  const root = await tempDir();
  dirs.push(root);
  await mkdir(join(root, 'etc/conf.d'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await writeFile(join(root, 'etc/conf.d/a'), 'a\n');
  await writeFile(join(root, 'etc/conf.d/b'), 'b\n');
  await mkdir(join(root, 'usr/lib/deep/er'), { recursive: true });
  await writeFile(join(root, 'usr/lib/deep/er/x.so'), 'x\n');
  await writeFile(join(root, 'usr/lib/libc.so'), 'libc\n');
  await symlink('libc.so', join(root, 'usr/lib/libc.so.6'));
  await writeFile(join(root, 'big'), Buffer.alloc(100_000, 7));
  const snapshotter = createTreeBaseline(root);
  await snapshotter.prepare();
  await mutate(root);
  const diff = await snapshotter.commit();
  return { diff, lines: diff.changes.map((change) => `${change.kind} ${change.path}`) };
}

describe('diff by lstat', () => {
  it('a step that changes nothing gives an empty diff (no layer, empty_layer: true)', async () => {
    const { diff } = await stepDiff(() => Promise.resolve());
    expect(isEmptyDiff(diff)).toBe(true);
  });

  it('added file: the file and its unchanged-stat parents; parent dir is modified (mtime)', async () => {
    const { lines } = await stepDiff(async (root) => {
      await writeFile(join(root, 'etc/conf.d/c'), 'c\n');
    });
    expect(lines).toEqual(['parent etc', 'modified etc/conf.d', 'added etc/conf.d/c']);
  });

  it('modified content in place: the file re-emitted with its parents, siblings untouched', async () => {
    const { lines, diff } = await stepDiff(async (root) => {
      await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/bash\n');
    });
    expect(lines).toEqual(['parent etc', 'modified etc/passwd']);
    expect(diff.changes[1]).toMatchObject({ meta: { type: 'file', size: 28 } });
  });

  it('same size, mtime put back: ctime still tells', async () => {
    const { lines } = await stepDiff(async (root) => {
      const path = join(root, 'etc/conf.d/a');
      const before = await import('node:fs/promises').then((fs) => fs.lstat(path));
      await writeFile(path, 'A\n');
      await utimes(path, before.atime, before.mtime);
    });
    expect(lines).toContain('modified etc/conf.d/a');
  });

  it('chmod only re-emits the file (copy-up), with the new mode', async () => {
    const { diff, lines } = await stepDiff(async (root) => {
      await chmod(join(root, 'big'), 0o600);
    });
    expect(lines).toEqual(['modified big']);
    expect(diff.changes[0]).toMatchObject({ meta: { mode: 0o600, size: 100_000 } });
  });

  it.runIf(isRoot)('chown only re-emits the file with the new owner', async () => {
    const { diff, lines } = await stepDiff(async (root) => {
      await chown(join(root, 'usr/lib/libc.so'), 1234, 5678);
    });
    expect(lines).toEqual(['parent usr', 'parent usr/lib', 'modified usr/lib/libc.so']);
    expect(diff.changes[2]).toMatchObject({ meta: { uid: 1234, gid: 5678 } });
  });

  it('deleted file: one deletion, before the siblings of its directory', async () => {
    const { lines } = await stepDiff(async (root) => {
      await unlink(join(root, 'etc/conf.d/a'));
      await writeFile(join(root, 'etc/conf.d/0'), 'zero\n');
    });
    expect(lines).toEqual([
      'parent etc',
      'modified etc/conf.d',
      'deleted etc/conf.d/a',
      'added etc/conf.d/0',
    ]);
  });

  it('deleted subtree: one deletion at its top', async () => {
    const { lines } = await stepDiff(async (root) => {
      await rm(join(root, 'usr/lib/deep'), { recursive: true });
    });
    expect(lines).toEqual(['parent usr', 'modified usr/lib', 'deleted usr/lib/deep']);
  });

  it('directory deleted and recreated: old children deleted one by one, new ones added', async () => {
    const { lines } = await stepDiff(async (root) => {
      await rm(join(root, 'etc/conf.d'), { recursive: true });
      await mkdir(join(root, 'etc/conf.d'));
      await writeFile(join(root, 'etc/conf.d/new'), 'new\n');
    });
    expect(lines).toEqual([
      'modified etc',
      'modified etc/conf.d',
      'deleted etc/conf.d/a',
      'deleted etc/conf.d/b',
      'added etc/conf.d/new',
    ]);
  });

  it('file replaced by a directory: a type change, the new subtree added', async () => {
    const { diff, lines } = await stepDiff(async (root) => {
      await unlink(join(root, 'etc/passwd'));
      await mkdir(join(root, 'etc/passwd'));
      await writeFile(join(root, 'etc/passwd/inner'), 'i\n');
    });
    expect(lines).toEqual(['modified etc', 'typeChanged etc/passwd', 'added etc/passwd/inner']);
    expect(diff.changes[1]).toMatchObject({ kind: 'typeChanged', from: 'file', meta: { type: 'dir' } });
  });

  it('directory replaced by a file: a type change, no deletions below it', async () => {
    const { lines } = await stepDiff(async (root) => {
      await rm(join(root, 'usr/lib/deep'), { recursive: true });
      await writeFile(join(root, 'usr/lib/deep'), 'now a file\n');
    });
    expect(lines).toEqual(['parent usr', 'modified usr/lib', 'typeChanged usr/lib/deep']);
  });

  it('symlink retargeted: modified with the new target', async () => {
    const { diff, lines } = await stepDiff(async (root) => {
      await unlink(join(root, 'usr/lib/libc.so.6'));
      await symlink('deep/er/x.so', join(root, 'usr/lib/libc.so.6'));
    });
    expect(lines).toContain('modified usr/lib/libc.so.6');
    const change = diff.changes.find((c) => c.path === 'usr/lib/libc.so.6');
    expect(change).toMatchObject({ meta: { type: 'symlink', linkTarget: 'deep/er/x.so' } });
  });

  it('new hard links within the layer: the first path is the file, the others link to it', async () => {
    const { diff } = await stepDiff(async (root) => {
      await writeFile(join(root, 'etc/z-orig'), 'linked\n');
      await link(join(root, 'etc/z-orig'), join(root, 'etc/a-link'));
      await link(join(root, 'etc/z-orig'), join(root, 'usr/m-link'));
    });
    expect(diff.hardLinkGroups).toEqual([['etc/a-link', 'etc/z-orig', 'usr/m-link']]);
    const byPath = new Map(diff.changes.map((c) => [c.path, c]));
    expect(byPath.get('etc/a-link')).toMatchObject({ meta: { type: 'file' } });
    expect(byPath.get('etc/a-link')).not.toHaveProperty('meta.hardLinkTo');
    expect(byPath.get('etc/z-orig')).toMatchObject({ meta: { hardLinkTo: 'etc/a-link' } });
    expect(byPath.get('usr/m-link')).toMatchObject({ meta: { hardLinkTo: 'etc/a-link' } });
  });

  it("a new hard link to a lower-layer file re-emits that file (its ctime and nlink change), as Docker's builder does", async () => {
    const { diff, lines } = await stepDiff(async (root) => {
      await link(join(root, 'usr/lib/libc.so'), join(root, 'etc/libc-link'));
    });
    expect(lines).toContain('modified usr/lib/libc.so');
    expect(lines).toContain('added etc/libc-link');
    expect(diff.hardLinkGroups).toEqual([['etc/libc-link', 'usr/lib/libc.so']]);
  });

  it('long and non-ASCII names are ordinary paths', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(200)}`;
    const { lines } = await stepDiff(async (root) => {
      await mkdir(join(root, 'd'.repeat(120)));
      await writeFile(join(root, long), 'x');
      await writeFile(join(root, 'etc/ñandú-日本.txt'), 'y');
    });
    expect(lines).toContain(`added ${long}`);
    expect(lines).toContain('added etc/ñandú-日本.txt');
  });

  it('setuid, setgid and sticky bits are recorded', async () => {
    const { diff } = await stepDiff(async (root) => {
      await chmod(join(root, 'usr/lib/libc.so'), 0o6755);
      await mkdir(join(root, 'tmp'));
      await chmod(join(root, 'tmp'), 0o1777);
    });
    const byPath = new Map(diff.changes.map((c) => [c.path, c]));
    expect(byPath.get('usr/lib/libc.so')).toMatchObject({ kind: 'modified', meta: { mode: 0o6755 } });
    expect(byPath.get('tmp')).toMatchObject({ kind: 'added', meta: { type: 'dir', mode: 0o1777 } });
  });

  it('a fifo is an entry of its own type', async () => {
    const { diff } = await stepDiff((root) => {
      execFileSync('mkfifo', [join(root, 'etc/pipe')]);
      return Promise.resolve();
    });
    expect(diff.changes.find((c) => c.path === 'etc/pipe')).toMatchObject({
      kind: 'added',
      meta: { type: 'fifo' },
    });
  });

  it('sockets are skipped: only the directory that holds one changes', async () => {
    const { createServer } = await import('node:net');
    const server = createServer();
    try {
      const { lines } = await stepDiff(async (root) => {
        await new Promise<void>((resolve) => server.listen(join(root, 'etc/sock'), resolve));
        expect((await lstat(join(root, 'etc/sock'))).isSocket()).toBe(true);
      });
      expect(lines).toEqual(['modified etc']);
    } finally {
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    }
  });

  it('a rename is a deletion plus an addition', async () => {
    const { lines } = await stepDiff(async (root) => {
      await rename(join(root, 'etc/conf.d/b'), join(root, 'etc/conf.d/c'));
    });
    expect(lines).toEqual([
      'parent etc',
      'modified etc/conf.d',
      'deleted etc/conf.d/b',
      'added etc/conf.d/c',
    ]);
  });

  it('excluded paths never reach the diff', async () => {
    const root = await tempDir();
    dirs.push(root);
    await mkdir(join(root, 'proc'));
    const exclude = (path: string): boolean => path === 'proc' || path === 'etc/hosts';
    const before = await scanTree(root, { exclude });
    await writeFile(join(root, 'proc/cpuinfo'), 'x');
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/hosts'), '127.0.0.1 localhost\n');
    const after = await scanTree(root, { exclude });
    const diff = await diffSnapshots(before, after, root);
    expect(diff.changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['added etc']);
  });

  it("two different trees: containerd's rule reads content only when both mtimes are whole seconds", async () => {
    const lower = await tempDir();
    const upper = await tempDir();
    dirs.push(lower, upper);
    await writeFile(join(lower, 'same'), 'same');
    await writeFile(join(lower, 'differs'), 'aaaa');
    await writeFile(join(lower, 'nanos'), 'nnnn');
    await cp(lower, upper, { recursive: true });
    await writeFile(join(upper, 'differs'), 'bbbb');
    const whole = new Date(1_650_000_000_000);
    for (const root of [lower, upper]) {
      await utimes(join(root, 'same'), whole, whole);
      await utimes(join(root, 'differs'), whole, whole);
    }
    await utimes(join(lower, 'nanos'), 1_650_000_000.25, 1_650_000_000.25);
    await utimes(join(upper, 'nanos'), 1_650_000_000.5, 1_650_000_000.5);
    const diff = await diffSnapshots(await scanTree(lower), await scanTree(upper), upper);
    expect(diff.changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['modified differs', 'modified nanos']);
  });

  it('a big listing records what the threadpool scan records, for every type', async () => {
    const root = await tempDir();
    dirs.push(root);
    const big = join(root, 'big');
    await mkdir(big);
    // Thousands of entries in one directory, of every type, owners and modes.
    await Promise.all(
      Array.from({ length: 3000 }, (_, f) => writeFile(join(big, `f${f}`), 'x'.repeat(f % 50))),
    );
    for (let i = 0; i < 40; i++) {
      await mkdir(join(big, `dir${i}`));
      await writeFile(join(big, `dir${i}`, 'inside'), `${i}`);
      await symlink(`f${i}`, join(big, `link${i}`));
      await link(join(big, `f${i}`), join(big, `hard${i}`));
      await chmod(join(big, `f${100 + i}`), 0o4750);
      if (isRoot) await chown(join(big, `f${200 + i}`), 1000 + i, 2000 + i);
    }
    execFileSync('mkfifo', [join(big, 'fifo')]);
    await writeFile(join(big, 'ünïcødé'), 'name');
    const sliced = await scanTree(root);
    const parallel = await scanTree(root, { parallel: true });
    expect(sliced.entries.size).toBe(1 + 3000 + 4 * 40 + 2);
    expect(new Map([...sliced.entries].sort())).toEqual(new Map([...parallel.entries].sort()));
    expect(sliced.entries.get('big/link3')).toMatchObject({ type: 'symlink', linkTarget: 'f3' });
    expect(sliced.entries.get('big/f103')).toMatchObject({ type: 'file', mode: 0o4750, size: 3 });
    expect(sliced.entries.get('big/fifo')).toMatchObject({ type: 'fifo', size: 0 });
    expect(sliced.entries.get('big/hard5')!.ino).toBe(sliced.entries.get('big/f5')!.ino);
  });

  it('entries of a big listing that vanish while it is scanned are left out, as in a small one', async () => {
    const root = await tempDir();
    dirs.push(root);
    await Promise.all(Array.from({ length: 4000 }, (_, f) => writeFile(join(root, `f${f}`), `${f}`)));
    // Removed while the scan runs (the step's last processes may still be at work).
    const removing = Promise.all(Array.from({ length: 2000 }, (_, f) => rm(join(root, `f${2 * f}`))));
    const during = await scanTree(root);
    await removing;
    const after = await scanTree(root);
    expect(after.entries.size).toBe(2000);
    for (const [path, stat] of after.entries) expect(during.entries.get(path)).toEqual(stat);
    expect(during.entries.size).toBeGreaterThanOrEqual(2000);
  });

  it('scans 20,000 files quickly and diffs an unchanged tree to nothing', async () => {
    const root = await tempDir();
    dirs.push(root);
    for (let d = 0; d < 100; d++) {
      await mkdir(join(root, `d${d}`));
      await Promise.all(
        Array.from({ length: 200 }, (_, f) => writeFile(join(root, `d${d}`, `f${f}`), `${d}/${f}`)),
      );
    }
    const started = performance.now();
    const before = await scanTree(root);
    const after = await scanTree(root);
    const diff = await diffSnapshots(before, after, root);
    const elapsed = performance.now() - started;
    expect(before.entries.size).toBe(20_100);
    expect(diff.changes).toEqual([]);
    // Generous bound for a loaded CI box; bench/ has the real figure.
    expect(elapsed).toBeLessThan(5_000);
    // The threadpool strategy records exactly the same thing.
    const parallel = await scanTree(root, { parallel: true });
    expect(parallel.entries).toEqual(after.entries);
  });
});
