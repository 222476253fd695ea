import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffSnapshots } from '../../src/snapshot/diff.js';
import { extractLayer } from '../../src/snapshot/extract.js';
import { layerTarStream } from '../../src/snapshot/layer-writer.js';
import { emptySnapshot, scanTree } from '../../src/snapshot/scan.js';
import { latin1, latin1Path } from '../helpers/non-utf8.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { buildTar, file, removeAll, tempDir } from './helpers.js';

/**
 * Names that are not UTF-8 (issue 26) through the snapshot module: scan, the layer tar (bytes as
 * Go's archive/tar writes them, which BuildKit's layers showed: a PAX `path` record with the raw
 * bytes, the ustar name field with only the ASCII bytes) and extraction (plain and overlay form).
 */

/** The raw header blocks of a tar: name and linkname fields as bytes, PAX data as bytes. */
function rawEntries(tar: Buffer): { name: Buffer; type: string; link: Buffer; data: Buffer }[] {
  const out = [];
  let offset = 0;
  while (offset + 512 <= tar.length) {
    const block = tar.subarray(offset, offset + 512);
    if (block.every((byte) => byte === 0)) break;
    const field = (start: number, length: number): Buffer => {
      const raw = block.subarray(start, start + length);
      const end = raw.indexOf(0);
      return Buffer.from(end < 0 ? raw : raw.subarray(0, end));
    };
    const size = Number.parseInt(field(124, 12).toString('latin1').trim() || '0', 8);
    const type = String.fromCharCode(block[156]!);
    out.push({
      name: field(0, 100),
      type,
      link: field(157, 100),
      data: tar.subarray(offset + 512, offset + 512 + size),
    });
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

async function tarOf(dir: string): Promise<Buffer> {
  const diff = await diffSnapshots(emptySnapshot(dir), await scanTree(dir), dir);
  const chunks: Buffer[] = [];
  for await (const chunk of layerTarStream(diff)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every path below `root` as bytes written Latin-1 (`caf\xe9`), '/'-separated, sorted. */
function bytePaths(root: string, rel = ''): string[] {
  const out: string[] = [];
  const dir = rel === '' ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), latin1(rel)]);
  for (const name of readdirSync(dir, { encoding: 'buffer' })) {
    const path = rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`;
    out.push(path);
    if (lstatSync(latin1Path(root, path)).isDirectory()) out.push(...bytePaths(root, path));
  }
  return out.sort();
}

const LONG = `${'l'.repeat(110)}\xe9`;

describe('names that are not UTF-8 in layers', () => {
  let work = '';
  let tree = '';
  beforeAll(async () => {
    work = await tempDir('stratum-names-');
    tree = join(work, 'tree');
    mkdirSync(tree);
    writeFileSync(latin1Path(tree, 'caf\xe9'), 'latin-1\n');
    writeFileSync(join(tree, 'café'), 'utf-8\n');
    mkdirSync(latin1Path(tree, 'dir\xff'));
    writeFileSync(latin1Path(tree, 'dir\xff/x\xe9y'), 'below\n');
    writeFileSync(latin1Path(tree, LONG), 'long\n');
    symlinkSync(latin1('tgt\xe9'), join(tree, 'lnk'));
  });
  afterAll(() => removeAll(work));

  it('both scans see the names with their bytes (escaped), link targets too', async () => {
    for (const parallel of [false, true]) {
      const scanned = await scanTree(tree, { parallel });
      expect([...scanned.entries.keys()].sort()).toEqual(
        ['caf\udce9', 'café', 'dir\udcff', 'dir\udcff/x\udce9y', 'l'.repeat(110) + '\udce9', 'lnk'].sort(),
      );
      expect(scanned.entries.get('lnk')?.linkTarget).toBe('tgt\udce9');
    }
  });

  it('the layer tar carries the exact bytes as Go writes them: PAX path/linkpath, ASCII-only ustar fields', async () => {
    const entries = rawEntries(await tarOf(tree));
    /** The PAX header carrying `record` (Latin-1 spelling of its bytes) and the entry after it. */
    const withRecord = (record: string) => {
      const at = entries.findIndex((entry) => entry.type === 'x' && entry.data.equals(latin1(record)));
      expect(at, record).toBeGreaterThanOrEqual(0);
      return { pax: entries[at]!, main: entries[at + 1]!, at };
    };
    // caf\xe9: "PaxHeaders.0/caf" with "13 path=caf\xe9\n", then "caf" (what BuildKit wrote here).
    const latin = withRecord('13 path=caf\xe9\n');
    expect(latin.pax.name.toString('latin1')).toBe('PaxHeaders.0/caf');
    expect(latin.main.name.toString('latin1')).toBe('caf');
    const below = withRecord('17 path=dir\xff/x\xe9y\n');
    expect(below.pax.name.toString('latin1')).toBe('dir/PaxHeaders.0/xy');
    expect(below.main.name.toString('latin1')).toBe('dir/xy');
    const link = withRecord('17 linkpath=tgt\xe9\n');
    expect(link.main.name.toString('latin1')).toBe('lnk');
    expect(link.main.link.toString('latin1')).toBe('tgt');
    withRecord('14 path=dir\xff/\n');
    withRecord(`121 path=${LONG}\n`);
    // Valid UTF-8 keeps its bytes; and byte order puts café (0xC3 0xA9) before caf\xe9, as Go sorts.
    const utf8 = withRecord('14 path=caf\xc3\xa9\n');
    expect(utf8.at).toBeLessThan(latin.at);
  });

  it('GNU tar reads back the same bytes', async () => {
    if (!requireTool('tar', 'tar')) return;
    const layer = join(work, 'layer.tar');
    writeFileSync(layer, await tarOf(tree));
    const listed = execFileSync('tar', ['-tf', layer, '--quoting-style=escape']).toString('latin1');
    expect(listed.split('\n').filter(Boolean).sort()).toEqual(
      ['caf\\351', 'caf\xc3\xa9', 'dir\\377/', 'dir\\377/x\\351y', `${'l'.repeat(110)}\\351`, 'lnk'].sort(),
    );
  });

  it('extraction makes the exact bytes: from our layer, from GNU tar (ustar fields, GNU long names)', async () => {
    const ours = join(work, 'x-ours');
    mkdirSync(ours);
    await extractLayer(Readable.from([await tarOf(tree)]), ours);
    expect(bytePaths(ours)).toEqual(bytePaths(tree));
    expect(readlinkSync(join(ours, 'lnk'), { encoding: 'buffer' })).toEqual(latin1('tgt\xe9'));

    if (!requireTool('tar', 'tar')) return;
    const gnu = execFileSync('tar', ['--format=gnu', '--sort=name', '-C', tree, '-cf', '-', '.']);
    expect(gnu.includes(Buffer.from('././@LongLink'))).toBe(true); // the long name is a GNU 'L' entry
    const fromGnu = join(work, 'x-gnu');
    mkdirSync(fromGnu);
    await extractLayer(Readable.from([gnu]), fromGnu);
    expect(bytePaths(fromGnu)).toEqual(bytePaths(tree));
  });

  it('a whiteout of such a name removes it (plain form) or becomes its 0/0 device (overlay form)', async () => {
    const target = join(work, 'x-whiteout');
    mkdirSync(target);
    await extractLayer(Readable.from([await tarOf(tree)]), target);
    const whiteouts = buildTar([file('.wh.caf\udce9', ''), file('dir\udcff/.wh.x\udce9y', '')]);
    await extractLayer(Readable.from([whiteouts]), target);
    expect(bytePaths(target)).not.toContain('caf\xe9');
    expect(bytePaths(target)).not.toContain('dir\xff/x\xe9y');
    expect(bytePaths(target)).toContain('caf\xc3\xa9'); // café in UTF-8

    if (!isRoot) return; // a 0/0 device needs root
    const overlay = join(work, 'x-overlay');
    mkdirSync(overlay);
    await extractLayer(Readable.from([whiteouts]), overlay, { overlayOpaqueXattr: 'trusted.overlay.opaque' });
    const device = lstatSync(latin1Path(overlay, 'caf\xe9'));
    expect(device.isCharacterDevice() && device.rdev === 0).toBe(true);
  });
});
