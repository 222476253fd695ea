import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  displayName,
  fsPath,
  isPlainName,
  listDir,
  listDirSync,
  nameBytes,
  nameFromBinary,
  nameFromBytes,
  readLink,
  readLinkSync,
} from '../../src/util/file-names.js';
import { compareUtf8 } from '../../src/snapshot/paths.js';
import { latin1, latin1Path } from '../helpers/non-utf8.js';

/**
 * Names that are not UTF-8 (issue 26): every byte string maps to one string and back, valid
 * UTF-8 names are the strings Node gives, and directories list and links read to those strings.
 */

describe('file names as bytes (surrogateescape)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-names-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('valid UTF-8 is the string Node decodes; each bad byte becomes U+DC80..U+DCFF', () => {
    for (const name of ['plain', 'café', '日本', '😀', 'a\ufffdb', '']) {
      expect(nameFromBytes(Buffer.from(name))).toBe(name);
      expect(isPlainName(name)).toBe(true);
    }
    expect(nameFromBytes(latin1('caf\xe9'))).toBe('caf\udce9');
    expect(nameFromBytes(latin1('x\xffy'))).toBe('x\udcffy');
    // A truncated sequence, an encoded surrogate and an overlong form: every byte escaped.
    expect(nameFromBytes(Buffer.from([0x61, 0xe2, 0x82]))).toBe('a\udce2\udc82');
    expect(nameFromBytes(Buffer.from([0xed, 0xa0, 0x80]))).toBe('\udced\udca0\udc80');
    expect(nameFromBytes(Buffer.from([0xc0, 0xaf]))).toBe('\udcc0\udcaf');
    expect(isPlainName('caf\udce9')).toBe(false);
  });

  it('round trip: every byte sequence comes back as the same bytes', () => {
    const samples: Buffer[] = [
      Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x2f)),
    ];
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let n = 0; n < 2000; n++)
      samples.push(Buffer.from(Array.from({ length: next() % 12 }, () => next() % 256)));
    for (const bytes of samples) expect(nameBytes(nameFromBytes(bytes)).equals(bytes)).toBe(true);
    // A pair whose low half lies in the escape range is a character, not an escape.
    expect(nameBytes('\ud800\udc80').equals(Buffer.from('\ud800\udc80'))).toBe(true);
  });

  it('fsPath leaves plain names alone and gives bytes for escaped ones', () => {
    expect(fsPath('/a/café')).toBe('/a/café');
    expect(fsPath('/a/caf\udce9')).toEqual(Buffer.from('/a/caf\xe9', 'latin1'));
  });

  it('displayName shows escaped bytes as \\xNN and nothing else changes', () => {
    expect(displayName('d/caf\udce9.txt')).toBe('d/caf\\xE9.txt');
    expect(displayName('😀 café')).toBe('😀 café');
  });

  it('nameFromBinary: tar-stream latin1 strings to names', () => {
    expect(nameFromBinary('plain/name')).toBe('plain/name');
    expect(nameFromBinary(Buffer.from('café').toString('latin1'))).toBe('café');
    expect(nameFromBinary('caf\xe9')).toBe('caf\udce9');
  });

  it('layer order compares escaped names by their bytes (Go sorts bytes)', () => {
    const names = ['caf\udce9', 'café', 'caf\udcc2', 'cafz', '😀', '\uffff'];
    const sorted = [...names].sort(compareUtf8);
    const byBytes = [...names].sort((a, b) => Buffer.compare(nameBytes(a), nameBytes(b)));
    expect(sorted).toEqual(byBytes);
  });

  it('lists directories and reads links with the bytes kept', async () => {
    const sub = join(dir, 'list');
    mkdirSync(sub);
    writeFileSync(join(sub, 'plain'), '');
    writeFileSync(latin1Path(sub, 'caf\xe9'), '');
    symlinkSync(latin1('tgt\xe9'), latin1Path(sub, 'lnk\xff'));
    const expected = ['caf\udce9', 'lnk\udcff', 'plain'];
    expect(listDirSync(sub).sort()).toEqual(expected);
    expect((await listDir(sub)).sort()).toEqual(expected);
    expect(readLinkSync(join(sub, 'lnk\udcff'))).toBe('tgt\udce9');
    expect(await readLink(join(sub, 'lnk\udcff'))).toBe('tgt\udce9');
    // Node's own string listing loses the byte: that is what this module is for.
    expect(readdirSync(sub)).toContain('caf\ufffd');
  });
});
