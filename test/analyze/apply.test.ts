import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { applyLayers, hardLinkGroups, snapshotState } from '../../src/analyze/index.js';
import { StratumError } from '../../src/errors.js';
import { BASE, buildImage, type Step } from './images.js';

function sha(text: string | Buffer): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

async function finalPaths(steps: readonly Step[]): Promise<string[]> {
  const { source } = await buildImage(steps);
  const { fs } = await applyLayers(source);
  return [...snapshotState(fs).entries.keys()];
}

describe('applyLayers: Docker layer rules', () => {
  it('records type, mode with special bits, owner, size, content digest, link target and device numbers', async () => {
    const { source } = await buildImage([
      {
        createdBy: 'one',
        members: [
          { name: 'usr/bin/tool', content: 'abc', mode: 0o4755, uid: 10, gid: 20, mtime: 1_700_000_123 },
          { name: 'usr/bin/alias', type: 'symlink', linkname: 'tool' },
          { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
          { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 },
          { name: 'run/pipe', type: 'fifo' },
          { name: 'tmp/', type: 'directory', mode: 0o1777 },
        ],
      },
    ]);
    const { fs } = await applyLayers(source);
    const entries = snapshotState(fs).entries;
    expect(entries.get('usr/bin/tool')).toEqual({
      type: 'file',
      mode: 0o4755,
      uid: 10,
      gid: 20,
      size: 3,
      sha256: sha('abc'),
      mtime: 1_700_000_123,
    });
    expect(entries.get('usr/bin/alias')?.linkTarget).toBe('tool');
    expect(entries.get('dev/null')).toMatchObject({ type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 });
    expect(entries.get('dev/sda')).toMatchObject({ type: 'block', devMajor: 8, devMinor: 0 });
    expect(entries.get('run/pipe')?.type).toBe('fifo');
    expect(entries.get('tmp')).toMatchObject({ type: 'dir', mode: 0o1777 });
    // Parents without an entry of their own are made as Docker makes them: root 0755.
    expect(entries.get('usr')).toMatchObject({ type: 'dir', mode: 0o755, uid: 0, gid: 0 });
  });

  it('.wh.NAME removes the path and its subtree from lower layers', async () => {
    const paths = await finalPaths([
      BASE,
      {
        createdBy: 'add',
        members: [
          { name: 'opt/app/lib/x.so', content: 'x' },
          { name: 'opt/keep', content: 'k' },
        ],
      },
      { createdBy: 'rm', members: [{ name: 'opt/', type: 'directory' }, { name: 'opt/.wh.app' }] },
    ]);
    expect(paths.filter((path) => path.startsWith('opt'))).toEqual(['opt', 'opt/keep']);
  });

  it('a whiteout after an entry of the same layer spares that entry (whiteouts only hit lower layers)', async () => {
    const paths = await finalPaths([
      BASE,
      { createdBy: 'add', members: [{ name: 'data/old', content: 'old' }] },
      {
        createdBy: 'replace',
        members: [{ name: 'data/new', content: 'new' }, { name: 'data/.wh.new' }, { name: 'data/.wh.old' }],
      },
    ]);
    expect(paths.filter((path) => path.startsWith('data'))).toEqual(['data', 'data/new']);
  });

  it('.wh..wh..opq clears lower content of its directory wherever it sits in the tar', async () => {
    for (const opaqueFirst of [true, false]) {
      const members = [
        { name: 'cfg/', type: 'directory' as const },
        { name: 'cfg/fresh', content: 'f' },
        { name: 'cfg/sub/inner', content: 'i' },
      ];
      const opaque = { name: 'cfg/.wh..wh..opq' };
      const paths = await finalPaths([
        BASE,
        {
          createdBy: 'lower',
          members: [
            { name: 'cfg/a', content: 'a' },
            { name: 'cfg/sub/b', content: 'b' },
          ],
        },
        { createdBy: 'opaque', members: opaqueFirst ? [opaque, ...members] : [...members, opaque] },
      ]);
      expect(paths.filter((path) => path.startsWith('cfg'))).toEqual([
        'cfg',
        'cfg/fresh',
        'cfg/sub',
        'cfg/sub/inner',
      ]);
    }
  });

  it('a file replacing a directory takes its subtree with it; a directory over a directory keeps children', async () => {
    const paths = await finalPaths([
      BASE,
      {
        createdBy: 'dirs',
        members: [
          { name: 'a/x', content: '1' },
          { name: 'b/y', content: '2' },
        ],
      },
      {
        createdBy: 'swap',
        members: [
          { name: 'a', content: 'now a file' },
          { name: 'b/', type: 'directory', mode: 0o700 },
        ],
      },
    ]);
    expect(paths.filter((path) => /^[ab](\/|$)/.test(path))).toEqual(['a', 'b', 'b/y']);
  });

  it('hard links share their target identity; re-emitting one path splits it from the group', async () => {
    const { source } = await buildImage([
      BASE,
      {
        createdBy: 'links',
        members: [
          { name: 'usr/bin/gzip', content: 'gz', mode: 0o755 },
          { name: 'usr/bin/gunzip', type: 'link', linkname: 'usr/bin/gzip' },
          { name: 'usr/bin/zcat', type: 'link', linkname: 'usr/bin/gzip' },
        ],
      },
      { createdBy: 'split', members: [{ name: 'usr/bin/zcat', content: 'own', mode: 0o755 }] },
    ]);
    const { fs, steps } = await applyLayers(source);
    expect(hardLinkGroups(fs).get('usr/bin/gzip')).toEqual(['usr/bin/gunzip', 'usr/bin/gzip']);
    expect(hardLinkGroups(fs).has('usr/bin/zcat')).toBe(false);
    expect(steps[1]!.layer!.contentBytes).toBe(2);
    // zcat's own content replaced a path, but gzip still holds the old bytes: nothing hidden.
    expect(steps[2]!.layer!.hidden).toEqual([]);
  });

  it('parents that are symlinks are followed inside the image', async () => {
    const paths = await finalPaths([
      {
        createdBy: 'usrmerge',
        members: [
          { name: 'usr/lib/', type: 'directory' },
          { name: 'lib', type: 'symlink', linkname: '/usr/lib' },
        ],
      },
      { createdBy: 'through', members: [{ name: 'lib/libc.so', content: 'c' }] },
    ]);
    expect(paths).toEqual(['lib', 'usr', 'usr/lib', 'usr/lib/libc.so']);
  });

  it('reports per layer: added, changed (with fields), deleted, re-emitted unchanged, sizes, hidden content', async () => {
    const { source } = await buildImage([
      BASE,
      { createdBy: 'ENV A=1' },
      {
        createdBy: 'RUN change',
        members: [
          { name: 'bin/', type: 'directory' },
          { name: 'bin/sh', content: '#!shell\n', mode: 0o700 },
          { name: 'etc/', type: 'directory' },
          { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
          { name: 'etc/.wh.group' },
          { name: 'etc/hosts', content: '127.0.0.1 localhost\n' },
        ],
      },
    ]);
    const { steps, layers } = await applyLayers(source);
    expect(steps.map((step) => [step.createdBy, step.emptyLayer, step.layer?.index])).toEqual([
      ['base', false, 0],
      ['ENV A=1', true, undefined],
      ['RUN change', false, 1],
    ]);
    const layer = layers[1]!;
    expect(layer.added).toEqual(['etc/hosts']);
    expect(layer.changed.map((entry) => [entry.path, entry.fields])).toEqual([['bin/sh', ['mode']]]);
    expect(layer.deleted).toEqual([]); // etc/group never existed: a whiteout of nothing
    expect(layer.reemitted.map((entry) => entry.path)).toEqual(['bin', 'etc', 'etc/passwd']);
    expect(layer.whiteouts).toBe(1);
    expect(layer.tarEntries).toBe(6);
    expect(layer.contentBytes).toBe(8 + 26 + 20);
    expect(layer.uncompressedSize).toBe(512 * (6 + 3) + 1024); // headers, 3 content blocks, end
    expect(layer.hidden.map((item) => [item.path, item.addedBy, item.how])).toEqual([
      ['bin/sh', 0, 'replaced'],
      ['etc/passwd', 0, 'replaced'],
    ]);
  });

  it('history that disagrees with the layer count is a one-line error', async () => {
    const { source } = await buildImage([BASE, { createdBy: 'x', members: [{ name: 'x', content: 'x' }] }], {
      history: [{ created_by: 'only one' }],
    });
    await expect(applyLayers(source)).rejects.toThrow(
      /^memory:test: history lists 1 layers but the manifest has 2$/,
    );
  });

  it('an image without history is a one-line error', async () => {
    const { source } = await buildImage([BASE], { history: null });
    const error = await applyLayers(source).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StratumError);
    expect((error as StratumError).message).toMatch(/^memory:test: the config has no history/);
  });

  it('a hard link to nothing names the layer and the link', async () => {
    const { source } = await buildImage([
      { createdBy: 'bad', members: [{ name: 'a', type: 'link', linkname: 'missing' }] },
    ]);
    await expect(applyLayers(source)).rejects.toThrow(/layer 1 .*hard link "a" → "missing": no such file/);
  });
});
