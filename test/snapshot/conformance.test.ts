import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import type { LayerRef } from '../../src/oci/image.js';
import { chooseSnapshotter } from '../../src/snapshot/choose.js';
import { extractLayerAuto } from '../../src/snapshot/extract.js';
import { UnpackedRootfsCache } from '../../src/snapshot/kept-rootfs.js';
import { writeDirectoryLayer, writeLayer } from '../../src/snapshot/layer-writer.js';
import type { RootfsSnapshot, Snapshotter, SnapshotterName } from '../../src/snapshot/snapshotter.js';
import { isEmptyDiff } from '../../src/snapshot/diff.js';
import { Workspace } from '../../src/util/workspace.js';
import { inCI, isRoot } from '../helpers/system.js';

/**
 * One conformance suite that every snapshotter passes, as containerd runs each snapshotter
 * through core/snapshots/testsuite: the same steps on the same layers, and the same properties
 * checked — a prepared root holds exactly its chain, a commit holds exactly what the step changed
 * (base + layer extracted equals the root after the step), deletions and replaced directories
 * become whiteouts, hard links copy up one name, and remove/close leave no mount behind.
 */

/**
 * Each path's type, mode, owner, content (or link target) and, unless `links` is false, its
 * hard-link partners.
 */
function describeTree(root: string, links = true): Map<string, string> {
  const out = new Map<string, string>();
  const inodes = new Map<string, string[]>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, path);
      const info = lstatSync(full);
      const mode = (info.mode & 0o7777).toString(8);
      let what: string;
      if (info.isSymbolicLink()) what = `symlink ${readlinkSync(full)}`;
      else if (info.isDirectory()) what = 'dir';
      else if (info.isFile()) {
        what = `file ${createHash('sha256').update(readFileSync(full)).digest('hex').slice(0, 12)}`;
        if (info.nlink > 1) {
          const id = `${info.dev}:${info.ino}`;
          inodes.set(id, [...(inodes.get(id) ?? []), path]);
        }
      } else what = 'other';
      out.set(path, `${what} ${mode} ${info.uid}:${info.gid}`);
      if (info.isDirectory()) walk(path);
    }
  };
  walk('');
  for (const group of inodes.values()) {
    if (group.length < 2 || !links) continue;
    for (const path of group) out.set(path, `${out.get(path)} linked-with ${group.join(',')}`);
  }
  return out;
}

/** The base every snapshotter starts from: files, a hard-link pair, a symlink, owners, empty dirs. */
function makeBase(dir: string): void {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc/config'), 'setting=1\n');
  mkdirSync(join(dir, 'keep/deep'), { recursive: true });
  writeFileSync(join(dir, 'keep/deep/file'), 'deep\n');
  writeFileSync(join(dir, 'keep/gone.txt'), 'to be deleted\n');
  mkdirSync(join(dir, 'tree/sub'), { recursive: true });
  writeFileSync(join(dir, 'tree/sub/a'), 'a\n');
  writeFileSync(join(dir, 'tree/b'), 'b\n');
  mkdirSync(join(dir, 'replaced/inner'), { recursive: true });
  writeFileSync(join(dir, 'replaced/inner/old'), 'old\n');
  mkdirSync(join(dir, 'refilled'));
  writeFileSync(join(dir, 'refilled/old'), 'old\n');
  writeFileSync(join(dir, 'link-a'), 'shared\n');
  linkSync(join(dir, 'link-a'), join(dir, 'link-b'));
  symlinkSync('etc/config', join(dir, 'config-link'));
  writeFileSync(join(dir, 'owned'), 'user 1000\n');
  chownSync(join(dir, 'owned'), 1000, 1000);
  writeFileSync(join(dir, 'script'), '#!/bin/sh\n');
  chmodSync(join(dir, 'script'), 0o755);
  mkdirSync(join(dir, 'empty'));
}

/** The first step: every kind of change a layer must carry. */
function firstStep(root: string): void {
  writeFileSync(join(root, 'new.txt'), 'new\n');
  writeFileSync(join(root, 'etc/config'), 'setting=2\n');
  rmSync(join(root, 'keep/gone.txt'));
  rmSync(join(root, 'tree'), { recursive: true });
  rmSync(join(root, 'replaced'), { recursive: true });
  writeFileSync(join(root, 'replaced'), 'a file where a directory was\n');
  rmSync(join(root, 'refilled'), { recursive: true });
  mkdirSync(join(root, 'refilled'));
  writeFileSync(join(root, 'refilled/new'), 'new\n');
  writeFileSync(join(root, 'link-a'), 'written through one name\n');
  chmodSync(join(root, 'script'), 0o700);
  chownSync(join(root, 'owned'), 2000, 2000);
  mkdirSync(join(root, 'empty/now-not'));
}

const SNAPSHOTTERS: readonly SnapshotterName[] = ['scan', 'overlay'];

describe.each(SNAPSHOTTERS)('snapshotter conformance: %s', (name) => {
  // Overlay needs root (or a user namespace) and an overlay-capable kernel; under CI it must run.
  const runs = name === 'scan' || isRoot || inCI;
  let dir: string;
  let blobs: BlobStore;
  let workspace: Workspace;
  let snapshotter: Snapshotter;
  let base: LayerRef;

  beforeAll(async () => {
    if (!runs) return;
    dir = mkdtempSync(join(tmpdir(), `stratum-conformance-${name}-`));
    blobs = new BlobStore(join(dir, 'cache'));
    workspace = await Workspace.create(join(dir, 'tmp'));
    const source = join(dir, 'base');
    mkdirSync(source);
    makeBase(source);
    const written = await writeDirectoryLayer(source, blobs);
    base = { descriptor: written.descriptor, diffId: written.diffId };
    const chosen = await chooseSnapshotter({
      cacheDir: join(dir, 'cache'),
      workspace,
      blobs,
      requested: name,
      kept: new UnpackedRootfsCache(join(dir, 'cache/rootfs')),
      adoptUppers: true,
    });
    snapshotter = chosen.snapshotter;
  });

  afterAll(async () => {
    if (!runs) return;
    await snapshotter.close();
    await workspace.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Base + `layers` extracted into a fresh directory: what any consumer of the image sees. */
  async function extracted(layers: readonly LayerRef[]): Promise<Map<string, string>> {
    const target = mkdtempSync(join(dir, 'extracted-'));
    chmodSync(target, 0o755);
    for (const layer of layers) await extractLayerAuto(blobs.read(layer.descriptor.digest), target);
    return describeTree(target);
  }

  async function commitLayer(rootfs: RootfsSnapshot): Promise<{ layer: LayerRef; names: string[] }> {
    const diff = await rootfs.commit();
    const written = await writeLayer(diff, blobs);
    const layer = { descriptor: written.descriptor, diffId: written.diffId };
    await rootfs.committed(layer);
    return { layer, names: diff.changes.map((change) => `${change.kind} ${change.path}`) };
  }

  it.runIf(runs)('is the snapshotter it says it is', () => {
    expect(snapshotter.name).toBe(name);
  });

  it.runIf(runs)('prepare holds exactly the chain; a step, committed, is exactly its layer', async () => {
    const rootfs = snapshotter.rootfs('conformance', { keep: false });
    const root = await rootfs.prepare([base]);
    // Hard links aside: the scan snapshotter splits every hard-link group before a step (what
    // overlay's copy-up does to the one name a step writes), overlay shows lower links as links.
    expect(describeTree(root, false)).toEqual(describeTree(join(dir, 'base'), false));

    firstStep(root);
    const after = describeTree(root);
    // Writing one name of a hard-link pair from a lower layer leaves the other as it was.
    expect(readFileSync(join(root, 'link-b'), 'utf8')).toBe('shared\n');
    const { layer, names } = await commitLayer(rootfs);
    // What a consumer extracting base + layer gets is what the step left.
    expect(await extracted([base, layer])).toEqual(after);
    // Deleted paths are whiteouts in the layer; a directory replaced by a file is a type change;
    // the unchanged sibling of a deleted file is not in the layer.
    expect(names).toEqual(
      expect.arrayContaining([
        'added new.txt',
        'modified etc/config',
        'deleted keep/gone.txt',
        'deleted tree',
        'typeChanged replaced',
        'modified link-a',
        'modified script',
        'modified owned',
        'added empty/now-not',
      ]),
    );
    expect(names.some((entry) => entry.includes('keep/deep'))).toBe(false);
    expect(names.some((entry) => entry.endsWith(' link-b'))).toBe(false);

    // The next step sees the committed state and its diff holds only its own change.
    const next = await rootfs.prepare([base, layer]);
    expect(describeTree(next)).toEqual(after);
    writeFileSync(join(next, 'second.txt'), 'second\n');
    const afterSecond = describeTree(next);
    const second = await commitLayer(rootfs);
    expect(second.names.filter((entry) => !entry.startsWith('parent '))).toEqual(['added second.txt']);
    expect(await extracted([base, layer, second.layer])).toEqual(afterSecond);

    // A step that changes nothing commits an empty diff.
    await rootfs.prepare([base, layer, second.layer]);
    expect(isEmptyDiff(await rootfs.commit())).toBe(true);
    await rootfs.remove();
  });

  it.runIf(runs)(
    'many deletions in one directory (overlay lists the lower directory once) are whiteouts of each, with its type',
    async () => {
      const rootfs = snapshotter.rootfs('many-deletions', { keep: false });
      const root = await rootfs.prepare([base]);
      mkdirSync(join(root, 'many'));
      const kinds = ['file', 'symlink', 'dir', 'fifo'] as const;
      const names = Array.from({ length: 120 }, (_, index) => `${kinds[index % 4]}-${index}`);
      for (const entry of names) {
        const path = join(root, 'many', entry);
        if (entry.startsWith('file')) writeFileSync(path, `${entry}\n`);
        else if (entry.startsWith('symlink')) symlinkSync(`target-of-${entry}`, path);
        else if (entry.startsWith('dir')) {
          mkdirSync(path);
          writeFileSync(join(path, 'inside'), 'inside\n');
        } else execFileSync('mkfifo', [path]);
      }
      const { layer } = await commitLayer(rootfs);

      const next = await rootfs.prepare([base, layer]);
      const deleted = names.filter((_, index) => index % 6 !== 0);
      for (const entry of deleted) rmSync(join(next, 'many', entry), { recursive: true });
      // (Only `many/`: the scan snapshotter splits the base's hard links before a step.)
      const onlyMany = (tree: Map<string, string>): [string, string][] =>
        [...tree].filter(([path]) => path.startsWith('many'));
      const after = onlyMany(describeTree(next));
      const second = await commitLayer(rootfs);
      // The directory itself changed too (its mtime): removing entries writes it.
      expect(second.names.filter((entry) => !entry.startsWith('parent ')).sort()).toEqual(
        [...deleted.map((entry) => `deleted many/${entry}`), 'modified many'].sort(),
      );
      expect(onlyMany(await extracted([base, layer, second.layer]))).toEqual(after);
      expect(after.length).toBeGreaterThan(20);
      await rootfs.remove();
    },
  );

  it.runIf(runs)('view holds the chain to read; each stage rootfs is its own', async () => {
    const one = snapshotter.rootfs('one', { keep: false });
    const two = snapshotter.rootfs('two', { keep: false });
    const first = await one.prepare([base]);
    writeFileSync(join(first, 'only-in-one'), '1\n');
    const { layer } = await commitLayer(one);
    const viewed = await two.view([base, layer]);
    expect(viewed).not.toBe(first);
    expect(readFileSync(join(viewed, 'only-in-one'), 'utf8')).toBe('1\n');
    expect(describeTree(await two.view([base, layer]))).toEqual(await extracted([base, layer]));
    await one.remove();
    await two.remove();
  });

  it.runIf(runs)('remove and close leave nothing mounted below the build', async () => {
    const rootfs = snapshotter.rootfs('mounted', { keep: false });
    await rootfs.prepare([base]);
    await rootfs.remove();
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((line) => line.includes(dir));
    if (name === 'scan') expect(mounts).toEqual([]);
    // overlay's unpacked layers stay leased until close(), but no stage mount outlives remove().
    expect(mounts.filter((line) => line.includes(workspace.root))).toEqual([]);
  });
});

describe('snapshotter conformance: the suite can fail', () => {
  it('a tree description tells a changed mode, owner, content and link apart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stratum-conformance-self-'));
    try {
      makeBase(dir);
      const before = describeTree(dir);
      chmodSync(join(dir, 'script'), 0o700);
      expect(describeTree(dir)).not.toEqual(before);
      const linked = describeTree(dir);
      rmSync(join(dir, 'link-b'));
      writeFileSync(join(dir, 'link-b'), 'shared\n');
      expect(describeTree(dir).get('link-a')).not.toBe(linked.get('link-a'));
      expect(describeTree(dir, false).get('link-a')).toBe(describeTree(dir).get('link-a'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
