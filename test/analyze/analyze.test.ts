import { describe, expect, it } from 'vitest';
import { analyzeImage } from '../../src/analyze/analyze.js';
import { formatAnalysis } from '../../src/analyze/format.js';
import { BASE, buildImage } from './images.js';

const BLOCK = 16 * 1024;

function edited(content: Buffer, offsets: readonly number[]): Buffer {
  const copy = Buffer.from(content);
  for (const offset of offsets) copy[offset] = (copy[offset]! + 1) % 256;
  return copy;
}

describe('analyzeImage: exact figures on images built in code', () => {
  it('content kept through another hard link is not wasted; a chmod of a linked pair is one copy-up', async () => {
    const data = Buffer.alloc(40_000, 1);
    const image = await buildImage([
      BASE,
      {
        createdBy: 'RUN install',
        members: [
          { name: 'usr/bin/gzip', content: data, mode: 0o755 },
          { name: 'usr/bin/gunzip', type: 'link', linkname: 'usr/bin/gzip' },
        ],
      },
      { createdBy: 'RUN rm gunzip', members: [{ name: 'usr/bin/.wh.gunzip' }] },
      {
        createdBy: 'RUN chmod',
        members: [
          { name: 'usr/bin/gzip', content: data, mode: 0o700 },
          { name: 'usr/bin/zcat', type: 'link', linkname: 'usr/bin/gzip' },
        ],
      },
    ]);
    const analysis = await analyzeImage(image.source);
    // Deleting gunzip hid nothing: gzip still holds the bytes. The chmod hid them.
    expect(analysis.wasted.map((item) => [item.path, item.size, item.hiddenBy.layer, item.how])).toEqual([
      ['usr/bin/gzip', 40_000, 3, 'replaced'],
    ]);
    expect(analysis.copyUps.map((item) => [item.path, item.size, item.changes])).toEqual([
      ['usr/bin/gzip', 40_000, ['mode']],
    ]);
    expect(analysis.totals.contentShipped).toBe(analysis.layers[0]!.contentBytes + 80_000);
    expect(analysis.totals.contentFinal).toBe(analysis.layers[0]!.contentBytes + 40_000);
  });

  it('says what caused a copy-up: a chmod is a metadata change, not an added file', async () => {
    const data = Buffer.alloc(50_000, 3);
    const image = await buildImage([
      BASE,
      { createdBy: 'RUN make data', members: [{ name: 'data.bin', content: data }] },
      { createdBy: 'RUN chmod 600 /data.bin', members: [{ name: 'data.bin', content: data, mode: 0o600 }] },
      { createdBy: 'RUN rm /data.bin', members: [{ name: '.wh.data.bin' }] },
    ]);
    const analysis = await analyzeImage(image.source);
    expect(analysis.copyUps.map((item) => [item.path, item.cause, item.changes])).toEqual([
      ['data.bin', 'metadata', ['mode']],
    ]);
    expect(analysis.layers[2]).toMatchObject({ added: 0, changed: 1, deleted: 0 });
    // The chmod's copy is wasted too: it is told apart from the original as a copy-up.
    expect(
      analysis.wasted.map((item) => [item.addedBy.layer, item.copiedUp ?? 'added', item.how]).sort(),
    ).toEqual([
      [1, 'added', 'replaced'],
      [2, 'metadata', 'deleted'],
    ]);
    const text = formatAnalysis(analysis);
    expect(text).toContain(
      'data.bin  in layer 3 (RUN chmod 600 /data.bin): changed (metadata: mode): whole file copied up',
    );
    expect(text).toContain(
      'data.bin  copied up by layer 3 (RUN chmod 600 /data.bin): changed (metadata), deleted by',
    );
  });

  it('a layer that only changes directory metadata says so instead of 0 added / 0 changed / 0 deleted', async () => {
    const image = await buildImage([
      BASE,
      { createdBy: 'RUN mkdir /d', members: [{ name: 'd/', type: 'directory' }] },
      { createdBy: 'RUN chmod 700 /d', members: [{ name: 'd/', type: 'directory', mode: 0o700 }] },
      { createdBy: 'RUN touch /bin', members: [{ name: 'bin/', type: 'directory', mtime: 1_800_000_000 }] },
    ]);
    const analysis = await analyzeImage(image.source);
    expect(analysis.layers[2]!.onlyDirectories).toEqual([{ path: 'd', fields: ['mode'] }]);
    expect(analysis.layers[3]!.onlyDirectories).toEqual([{ path: 'bin', fields: ['mtime'] }]);
    expect(analysis.layers[1]!.onlyDirectories).toBeUndefined();
    const rows = formatAnalysis(analysis).split('\n');
    const chmodRow = rows.findIndex((line) => line.endsWith('RUN chmod 700 /d'));
    expect(rows[chmodRow + 1]).toBe(
      '       no file added, changed or deleted: only directory metadata: d (mode)',
    );
    const touchRow = rows.findIndex((line) => line.endsWith('RUN touch /bin'));
    expect(rows[touchRow + 1]).toBe(
      '       no file added, changed or deleted: only directory metadata: bin (mtime)',
    );
  });

  it('a few-block edit is a copy-up; an edit of more than a tenth of the blocks is not', async () => {
    const content = Buffer.alloc(20 * BLOCK, 7);
    const image = await buildImage([
      BASE,
      {
        createdBy: 'COPY db',
        members: [
          { name: 'db', content },
          { name: 'log', content },
        ],
      },
      {
        createdBy: 'RUN edit',
        members: [
          { name: 'db', content: edited(content, [5, 3 * BLOCK]) },
          { name: 'log', content: edited(content, [0, BLOCK, 2 * BLOCK]) },
        ],
      },
    ]);
    const analysis = await analyzeImage(image.source);
    expect(
      analysis.copyUps.map((item) => [item.path, item.size, item.changes, item.changedBlocks, item.blocks]),
    ).toEqual([['db', 20 * BLOCK, ['content'], 2, 20]]);
  });

  it('an opaque directory hides its lower content: wasted, with the layer that hid it', async () => {
    const image = await buildImage([
      BASE,
      {
        createdBy: 'RUN fill cache',
        members: [
          { name: 'cache/a', content: 'aaaa' },
          { name: 'cache/b/c', content: 'cc' },
        ],
      },
      {
        createdBy: 'RUN reset cache',
        members: [
          { name: 'cache/', type: 'directory' },
          { name: 'cache/.wh..wh..opq' },
          { name: 'cache/new', content: 'n' },
        ],
      },
    ]);
    const analysis = await analyzeImage(image.source);
    expect(
      analysis.wasted.map((item) => [item.path, item.size, item.addedBy.layer, item.hiddenBy.layer]),
    ).toEqual([
      ['cache/a', 4, 1, 2],
      ['cache/b/c', 2, 1, 2],
    ]);
    expect(analysis.layers[2]).toMatchObject({ added: 1, deleted: 3, wastedBytes: 0 });
    expect(analysis.layers[1]).toMatchObject({ added: 4, wastedBytes: 6 });
  });

  it('a replaced file is recoverable too; names that look secret come first', async () => {
    const image = await buildImage([
      BASE,
      {
        createdBy: 'COPY config',
        members: [
          { name: 'app/settings.ini', content: 'password=hunter2\n' },
          { name: 'app/.env', content: 'TOKEN=abc\n' },
          { name: 'app/big.log', content: 'x'.repeat(1000) },
        ],
      },
      {
        createdBy: 'RUN clean',
        members: [
          { name: 'app/', type: 'directory' },
          { name: 'app/.wh..env' },
          { name: 'app/.wh.big.log' },
          { name: 'app/settings.ini', content: 'password=\n' },
        ],
      },
    ]);
    const analysis = await analyzeImage(image.source);
    expect(analysis.recoverable.map((item) => [item.path, item.how, item.secret])).toEqual([
      ['app/.env', 'deleted', 'environment file'],
      ['app/big.log', 'deleted', undefined],
      ['app/settings.ini', 'replaced', undefined],
    ]);
    expect(analysis.recoverable[0]!.layerDigest).toBe(image.source.manifest.value.layers[1]!.digest);
  });
});
