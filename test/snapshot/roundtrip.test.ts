import { execFileSync } from 'node:child_process';
import {
  appendFile,
  chmod,
  chown,
  link,
  mkdir,
  open,
  rm,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { createTreeBaseline } from '../../src/snapshot/tree-baseline.js';
import { extractLayerAuto } from '../../src/snapshot/extract.js';
import { writeDirectoryLayer, writeLayer } from '../../src/snapshot/layer-writer.js';
import { isRoot } from '../helpers/system.js';
import { describeTree, removeAll, tempDir } from './helpers.js';
import { listTar } from './list.js';
import { gunzipSync } from 'node:zlib';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});
async function newDir(): Promise<string> {
  const d = await tempDir('stratum-roundtrip-');
  dirs.push(d);
  return d;
}

const LONG = `${'long-directory-name-'.repeat(6)}/${'long-file-name-'.repeat(12)}.txt`;

async function buildA(root: string): Promise<void> {
  await mkdir(join(root, 'etc/conf.d/sub'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await writeFile(join(root, 'etc/conf.d/a'), 'a');
  await writeFile(join(root, 'etc/conf.d/sub/b'), 'b');
  await mkdir(join(root, 'usr/lib/deep/er'), { recursive: true });
  await writeFile(join(root, 'usr/lib/deep/er/x.so'), 'x');
  await writeFile(join(root, 'usr/lib/libc.so'), 'libc');
  await symlink('libc.so', join(root, 'usr/lib/libc.so.6'));
  await writeFile(join(root, 'usr/file-then-dir'), 'f');
  await mkdir(join(root, 'usr/dir-then-file/inner'), { recursive: true });
  await writeFile(join(root, 'usr/dir-then-file/inner/y'), 'y');
  await mkdir(join(root, 'usr/share/doc'), { recursive: true });
  await writeFile(join(root, 'usr/share/doc/untouched'), 'same in A and B');
  await mkdir(join(root, 'bin'));
  await writeFile(join(root, 'bin/busybox'), 'busybox');
  await link(join(root, 'bin/busybox'), join(root, 'bin/sh'));
  // A "large" file changed by one byte later: the whole file is re-emitted.
  const big = await open(join(root, 'big.bin'), 'w');
  await big.write(Buffer.alloc(3 * 1024 * 1024 + 17, 0x41));
  await big.close();
}

async function mutateToB(root: string): Promise<void> {
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/bash\n'); // modify
  await chmod(join(root, 'etc/conf.d/a'), 0o600); // chmod only
  if (isRoot) await chown(join(root, 'usr/lib/libc.so'), 1234, 4321); // chown only
  await rm(join(root, 'usr/lib/deep'), { recursive: true }); // delete subtree
  await rm(join(root, 'etc/conf.d'), { recursive: true }); // delete and recreate a dir
  await mkdir(join(root, 'etc/conf.d'));
  await writeFile(join(root, 'etc/conf.d/new'), 'n');
  await unlink(join(root, 'usr/file-then-dir')); // file → dir
  await mkdir(join(root, 'usr/file-then-dir'));
  await writeFile(join(root, 'usr/file-then-dir/inside'), 'i');
  await rm(join(root, 'usr/dir-then-file'), { recursive: true }); // dir → file
  await writeFile(join(root, 'usr/dir-then-file'), 'now a file');
  await unlink(join(root, 'usr/lib/libc.so.6')); // symlink retarget
  await symlink('/usr/lib/libc.so', join(root, 'usr/lib/libc.so.6'));
  await link(join(root, 'bin/busybox'), join(root, 'bin/ls')); // new link to a lower file
  await writeFile(join(root, 'bin/tool'), 'tool'); // new links within the layer
  await link(join(root, 'bin/tool'), join(root, 'usr/tool-too'));
  await mkdir(join(root, LONG.split('/')[0]!)); // long and non-ASCII names
  await writeFile(join(root, LONG), 'long');
  await writeFile(join(root, 'etc/ñandú-日本.txt'), 'unicode');
  await writeFile(join(root, 'bin/suid'), '#!/bin/sh\n'); // setuid, sticky
  await chmod(join(root, 'bin/suid'), 0o4755);
  await mkdir(join(root, 'tmp'));
  await chmod(join(root, 'tmp'), 0o1777);
  execFileSync('mkfifo', [join(root, 'tmp/fifo')]); // fifo
  await appendFile(join(root, 'big.bin'), 'B'); // large file, one more byte
}

describe('round trip: snapshot, diff, layer, extract', () => {
  it('base layer + diff layer extracted onto a fresh directory give tree B exactly', async () => {
    const work = await newDir();
    const store = new BlobStore(await newDir());
    await buildA(work);
    const base = await writeDirectoryLayer(work, store);
    const snapshotter = createTreeBaseline(work);
    await snapshotter.prepare();
    await mutateToB(work);
    const diff = await snapshotter.commit();
    const layer = await writeLayer(diff, store);

    const fresh = await newDir();
    for (const written of [base, layer]) {
      await extractLayerAuto(
        store.read(written.descriptor.digest, { verify: true, size: written.descriptor.size }),
        fresh,
        {
          layerName: written.descriptor.digest,
        },
      );
    }
    const expected = await describeTree(work, { times: true });
    const actual = await describeTree(fresh, { times: true });
    expect(actual).toEqual(expected);
    expect(expected['bin/ls']?.linkGroup).toBe('bin/busybox');
    expect(expected['usr/tool-too']?.linkGroup).toBe('bin/tool');
    // Unchanged parts of A are not in the layer; whiteouts are.
    const names = (await listTar(gunzipSync(await store.readBytes(layer.descriptor.digest)))).map(
      (e) => e.name,
    );
    expect(names).not.toContain('usr/share/doc/untouched');
    expect(names).not.toContain('usr/share/');
    expect(names).toContain('usr/lib/.wh.deep');
    expect(names).toContain('big.bin');
  });
});
