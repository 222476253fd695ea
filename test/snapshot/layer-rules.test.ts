import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyLayers, snapshotState } from '../../src/analyze/index.js';
import { StratumError } from '../../src/errors.js';
import { extractLayer } from '../../src/snapshot/extract.js';
import { buildImage } from '../analyze/images.js';
import { isRoot } from '../helpers/system.js';
import {
  buildTar,
  dir,
  file,
  hardlinkEntry,
  removeAll,
  streamOf,
  symlinkEntry,
  tempDir,
  type RawEntry,
} from './helpers.js';

/**
 * One layer driver (src/snapshot/apply-layer.ts) making the decisions of one set of layer rules
 * (src/snapshot/layer-rules.ts), three targets: the same layer sequences go through disk
 * extraction (extract.ts, plain form), overlay-form extraction (one directory per layer, stacked
 * here the way overlayfs stacks lowerdirs) and analyze's model (analyze/apply.ts); the resulting
 * trees must be equal, and equal to what Docker's applier gives (the `expected` column), or all
 * three must refuse the layers with the same error code.
 */

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});
async function newDir(): Promise<string> {
  const d = await tempDir('stratum-rules-');
  dirs.push(d);
  return d;
}

/** A tree as `path → kind` where kind is `dir`, `file:<content>`, `link:<target>`. */
type Tree = Record<string, string>;

const sha = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** The content a file entry carries is described by its digest in both trees. */
function fileKind(content: Buffer | string): string {
  return `file:${sha(content).slice(0, 12)}`;
}

async function diskTree(root: string): Promise<Tree> {
  const out: Tree = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const info = await lstat(join(root, path));
      if (info.isDirectory()) {
        out[path] = 'dir';
        await walk(path);
      } else if (info.isSymbolicLink()) out[path] = `link:${await readlink(join(root, path))}`;
      else if (info.isFile()) out[path] = fileKind(await readFile(join(root, path)));
      else out[path] = 'other';
    }
  }
  await walk('');
  return out;
}

async function viaExtraction(layers: readonly (readonly RawEntry[])[]): Promise<Tree> {
  const root = await newDir();
  for (const layer of layers) await extractLayer(streamOf(buildTar(layer)), root);
  return diskTree(root);
}

/** Overlay form: each layer in its own directory, then stacked as overlayfs reads lowerdirs. */
async function viaOverlayForm(layers: readonly (readonly RawEntry[])[]): Promise<Tree> {
  const merged = new Map<string, string>();
  const dropBelow = (path: string, self: boolean): void => {
    for (const key of [...merged.keys()]) {
      if ((self && key === path) || key.startsWith(`${path}/`)) merged.delete(key);
    }
  };
  for (const layer of layers) {
    const layerDir = await newDir();
    const result = await extractLayer(streamOf(buildTar(layer)), layerDir, {
      overlayOpaqueXattr: 'trusted.overlay.opaque',
    });
    const opaque = new Set(result.opaqueDirs ?? []);
    if (opaque.has('')) dropBelow('', false);
    async function walk(rel: string): Promise<void> {
      for (const name of (await readdir(join(layerDir, rel))).sort()) {
        const path = rel === '' ? name : `${rel}/${name}`;
        const info = await lstat(join(layerDir, path));
        if (info.isCharacterDevice() && info.rdev === 0) {
          dropBelow(path, true); // an overlay whiteout
        } else if (info.isDirectory()) {
          if (merged.get(path) !== 'dir') dropBelow(path, true);
          if (opaque.has(path)) dropBelow(path, false);
          merged.set(path, 'dir');
          await walk(path);
        } else {
          dropBelow(path, true);
          merged.set(
            path,
            info.isSymbolicLink()
              ? `link:${await readlink(join(layerDir, path))}`
              : fileKind(await readFile(join(layerDir, path))),
          );
        }
      }
    }
    await walk('');
  }
  return Object.fromEntries([...merged].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function viaModel(layers: readonly (readonly RawEntry[])[]): Promise<Tree> {
  const { source } = await buildImage(
    layers.map((layer, index) => ({ createdBy: `layer ${index}`, rawTar: buildTar(layer) })),
  );
  const { fs } = await applyLayers(source);
  const out: Tree = {};
  for (const [path, entry] of snapshotState(fs).entries) {
    if (entry.type === 'dir') out[path] = 'dir';
    else if (entry.type === 'symlink') out[path] = `link:${entry.linkTarget ?? ''}`;
    else if (entry.type === 'file') out[path] = `file:${(entry.sha256 ?? '').slice('sha256:'.length, 19)}`;
    else out[path] = 'other';
  }
  return out;
}

const wh = (path: string): RawEntry => file(path, '');
const base: RawEntry[] = [
  dir('etc/'),
  file('etc/a', 'a'),
  file('etc/b', 'b'),
  dir('etc/sub/'),
  file('etc/sub/deep', 'deep'),
  dir('opt/'),
  file('opt/tool', 'tool'),
];

interface Case {
  readonly name: string;
  readonly layers: readonly (readonly RawEntry[])[];
  /** The tree after the layers, or the error code every target refuses them with. */
  readonly expected: Tree | { readonly refused: string };
  /**
   * What overlay form shows besides: a layer directory holds its whiteouts without knowing the
   * lower layers, so a whiteout under a directory no layer has leaves that directory (empty)
   * in the stack, as containerd's overlay applier does too.
   */
  readonly overlayExtra?: Tree;
  /**
   * Where overlay form gives another outcome, and why. Each layer is extracted into an empty
   * directory of its own, so what the lower layers hold (a file or a symlink as a parent, the
   * source of a hard link) is not seen there; and the kernel ignores the opaque xattr on a
   * lowerdir's root (checked with a mount on this kernel). Known gaps, listed in the README.
   */
  readonly overlay?: { readonly expected: Tree | { readonly refused: string }; readonly why: string };
}

const f = fileKind;
const cases: readonly Case[] = [
  {
    name: '.wh.NAME removes a file and a directory with its subtree',
    layers: [base, [wh('etc/.wh.a'), wh('etc/.wh.sub')]],
    expected: { etc: 'dir', 'etc/b': f('b'), opt: 'dir', 'opt/tool': f('tool') },
  },
  {
    name: "an opaque marker first clears the lower content, keeps this layer's",
    layers: [base, [wh('etc/.wh..wh..opq'), file('etc/new', 'new')]],
    expected: { etc: 'dir', 'etc/new': f('new'), opt: 'dir', 'opt/tool': f('tool') },
  },
  {
    name: "an opaque marker after the layer's own files in that directory acts as if first",
    layers: [
      base,
      [dir('etc/'), file('etc/new', 'new'), dir('etc/sub/'), file('etc/sub/x', 'x'), wh('etc/.wh..wh..opq')],
    ],
    expected: {
      etc: 'dir',
      'etc/new': f('new'),
      'etc/sub': 'dir',
      'etc/sub/x': f('x'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
  },
  {
    name: 'a whiteout after the layer re-added the path removes only the lower copy',
    layers: [
      base,
      [
        dir('etc/sub/'),
        file('etc/sub/fresh', 'fresh'),
        wh('etc/.wh.sub'),
        file('etc/a', 'a2'),
        wh('etc/.wh.a'),
      ],
    ],
    expected: {
      etc: 'dir',
      'etc/a': f('a2'),
      'etc/b': f('b'),
      'etc/sub': 'dir',
      'etc/sub/fresh': f('fresh'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
  },
  {
    name: 'type replacement: dir → file, file → dir, file → symlink, symlink → dir',
    layers: [
      base,
      [file('etc/sub', 'now a file'), dir('etc/a/'), file('etc/a/inside', 'i'), symlinkEntry('etc/b', 'a')],
      [dir('etc/b/'), file('etc/b/real', 'r')],
    ],
    expected: {
      etc: 'dir',
      'etc/a': 'dir',
      'etc/a/inside': f('i'),
      'etc/b': 'dir',
      'etc/b/real': f('r'),
      'etc/sub': f('now a file'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
  },
  {
    name: 'aufs bookkeeping (.wh..wh.plnk) is ignored, never taken for a whiteout',
    layers: [
      [dir('x/'), file('x/plnk', 'p')],
      [wh('.wh..wh.plnk'), wh('x/.wh..wh.plnk')],
    ],
    expected: { x: 'dir', 'x/plnk': f('p') },
  },
  {
    name: 'entries through a symlinked parent and whiteouts through it land in the target',
    layers: [base, [symlinkEntry('conf', 'etc'), file('conf/c', 'c'), wh('conf/.wh.b')]],
    expected: {
      conf: 'link:etc',
      etc: 'dir',
      'etc/a': f('a'),
      'etc/c': f('c'),
      'etc/sub': 'dir',
      'etc/sub/deep': f('deep'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
  },
  {
    name: 'missing parents are made; a whiteout of a missing path does nothing',
    layers: [[file('a/b/c', 'c'), wh('nowhere/.wh.thing'), wh('a/.wh.none')]],
    expected: { a: 'dir', 'a/b': 'dir', 'a/b/c': f('c') },
    overlayExtra: { nowhere: 'dir' },
  },
  {
    name: 'a hard link keeps its content after the original is whited out',
    layers: [[file('one', 'shared'), hardlinkEntry('two', 'one')], [wh('.wh.one')]],
    expected: { two: f('shared') },
  },
  {
    name: 'a whiteout between two writes of the layer under the path keeps both, removes the lower content',
    layers: [
      base,
      [dir('etc/sub/'), file('etc/sub/early', 'e'), wh('etc/.wh.sub'), file('etc/sub/late', 'l')],
    ],
    expected: {
      etc: 'dir',
      'etc/a': f('a'),
      'etc/b': f('b'),
      'etc/sub': 'dir',
      'etc/sub/early': f('e'),
      'etc/sub/late': f('l'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
  },
  {
    name: "an opaque marker after the layer's own files at the root keeps them, clears the rest",
    layers: [base, [dir('opt/'), file('opt/new', 'n'), file('top', 't'), wh('.wh..wh..opq')]],
    expected: { opt: 'dir', 'opt/new': f('n'), top: f('t') },
    overlay: {
      expected: {
        etc: 'dir',
        'etc/a': f('a'),
        'etc/b': f('b'),
        'etc/sub': 'dir',
        'etc/sub/deep': f('deep'),
        opt: 'dir',
        'opt/new': f('n'),
        'opt/tool': f('tool'),
        top: f('t'),
      },
      why: 'overlayfs ignores the opaque xattr on a lowerdir root, so the stack alone keeps the layers below; the snapshotter leaves them out of the mount (overlay.ts visibleLayers, tested in test/executor/overlay.test.ts)',
    },
  },
  {
    name: 'a file replacing a directory with nested children takes the whole subtree',
    layers: [
      [dir('d/'), dir('d/e/'), dir('d/e/f/'), file('d/e/f/g', 'g'), file('d/h', 'h'), file('k', 'k')],
      [file('d', 'now a file')],
    ],
    expected: { d: f('now a file'), k: f('k') },
  },
  {
    name: 'a whiteout after the layer replaced a directory by a symlink keeps the symlink, unfollowed',
    layers: [base, [symlinkEntry('etc', 'opt'), wh('.wh.etc')]],
    expected: { etc: 'link:opt', opt: 'dir', 'opt/tool': f('tool') },
  },
  {
    name: 'a directory entry over a symlink to a directory replaces the link, not its target',
    layers: [[dir('real/'), file('real/x', 'x'), symlinkEntry('alias', 'real')], [dir('alias/')]],
    expected: { alias: 'dir', real: 'dir', 'real/x': f('x') },
  },
  {
    name: 'a hard link replaces a directory with children',
    layers: [[file('src', 's'), dir('d/'), file('d/child', 'c')], [hardlinkEntry('d', 'src')]],
    expected: { d: f('s'), src: f('s') },
    overlay: {
      expected: { refused: 'INVALID_IMAGE' },
      why: "the link's source is in a lower layer, not in this layer's directory",
    },
  },
  {
    name: 'whiteouts and an opaque marker below a file remove nothing',
    layers: [base, [wh('etc/a/.wh.x'), wh('etc/a/.wh..wh..opq')]],
    expected: {
      etc: 'dir',
      'etc/a': f('a'),
      'etc/b': f('b'),
      'etc/sub': 'dir',
      'etc/sub/deep': f('deep'),
      opt: 'dir',
      'opt/tool': f('tool'),
    },
    overlay: {
      expected: {
        etc: 'dir',
        'etc/a': 'dir',
        'etc/b': f('b'),
        'etc/sub': 'dir',
        'etc/sub/deep': f('deep'),
        opt: 'dir',
        'opt/tool': f('tool'),
      },
      why: "the lower file is not in this layer's directory: the whiteouts' parent is made, a directory over the file",
    },
  },
  {
    name: "a whiteout and an opaque marker below the layer's own file remove nothing",
    layers: [[file('f', 'f'), wh('f/.wh.x'), wh('f/.wh..wh..opq'), dir('d/'), file('d/y', 'y')]],
    expected: { d: 'dir', 'd/y': f('y'), f: f('f') },
  },
  {
    name: 'a hard link to a symlink is a symlink: a later entry goes through it',
    layers: [[dir('real/'), symlinkEntry('s', 'real'), hardlinkEntry('h', 's'), file('h/x', 'x')]],
    expected: { h: 'link:real', real: 'dir', 'real/x': f('x'), s: 'link:real' },
  },
  {
    name: 'an entry of a tar type Docker does not apply (a volume label) is skipped and replaces nothing',
    layers: [[file('x', 'old')], [{ ...file('x', 'label'), typeflag: 'V' }]],
    expected: { x: f('old') },
  },
  {
    name: 'an entry below a symlinked parent that climbs out of the root is refused (UNSAFE_PATH)',
    layers: [[symlinkEntry('up', '../..'), file('up/escaped', 'x')]],
    expected: { refused: 'UNSAFE_PATH' },
  },
  {
    name: 'a whiteout below a symlinked parent that climbs out of the root is refused (UNSAFE_PATH)',
    layers: [[symlinkEntry('up', '../../..')], [wh('up/.wh.shadow')]],
    expected: { refused: 'UNSAFE_PATH' },
    overlay: {
      expected: { up: 'dir' },
      why: "the lower symlink is not in this layer's directory: the whiteout's parent is made, a directory over it",
    },
  },
  {
    name: 'an entry below a file of a lower layer is refused (INVALID_IMAGE)',
    layers: [[file('f', 'f')], [file('f/child', 'c')]],
    expected: { refused: 'INVALID_IMAGE' },
    overlay: {
      expected: { f: 'dir', 'f/child': f('c') },
      why: "the lower file is not in this layer's directory: the parent is made, a directory over the file",
    },
  },
  {
    name: 'a hard link to itself changes nothing (tar -cf x.tar a a writes one)',
    layers: [[file('a', 'a'), hardlinkEntry('a', 'a')]],
    expected: { a: f('a') },
  },
  {
    name: 'a hard link to a file inside the directory it replaces is refused (INVALID_IMAGE)',
    layers: [[dir('d/'), file('d/x', 'x')], [hardlinkEntry('d', 'd/x')]],
    expected: { refused: 'INVALID_IMAGE' },
  },
  {
    name: 'a hard link to a path that does not exist is refused (INVALID_IMAGE)',
    layers: [[hardlinkEntry('a', 'missing')]],
    expected: { refused: 'INVALID_IMAGE' },
  },
];

/** The tree a run gives, or the code of the StratumError it was refused with. */
async function outcome(run: () => Promise<Tree>): Promise<Tree | { refused: string }> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof StratumError) return { refused: error.code };
    throw error;
  }
}

describe('one layer driver, the model and the disk target: the same layers give the same tree', () => {
  for (const testCase of cases) {
    it(testCase.name, async () => {
      expect(await outcome(() => viaModel(testCase.layers))).toEqual(testCase.expected);
      expect(await outcome(() => viaExtraction(testCase.layers))).toEqual(testCase.expected);
    });
  }
});

describe.skipIf(!isRoot)('overlay form stacks to the same tree (needs root for char 0/0 and xattrs)', () => {
  for (const testCase of cases) {
    const title =
      testCase.overlay === undefined
        ? testCase.name
        : `${testCase.name}; overlay form differs: ${testCase.overlay.why}`;
    it(title, async () => {
      const expected =
        testCase.overlay !== undefined
          ? testCase.overlay.expected
          : 'refused' in testCase.expected
            ? testCase.expected
            : Object.fromEntries(
                Object.entries({ ...testCase.expected, ...testCase.overlayExtra }).sort(([a], [b]) =>
                  a < b ? -1 : 1,
                ),
              );
      expect(await outcome(() => viaOverlayForm(testCase.layers))).toEqual(expected);
    });
  }
});
