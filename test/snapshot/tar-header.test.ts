import { describe, expect, it } from 'vitest';
import { encodeHeader, encodeHeaderInto, type TarHeader } from '../../src/snapshot/tar-header.js';

const base: TarHeader = {
  name: 'data/f1',
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 12,
  mtime: 1_700_000_000,
};

/** Headers that are one ustar block: every type, fields at their limits, names up to 100 bytes. */
const plain: TarHeader[] = [
  base,
  { ...base, name: 'd/', type: 'dir', mode: 0o1777, size: 0 },
  { ...base, name: 'x'.repeat(100), mode: 0o4755 },
  { ...base, name: 'l', type: 'symlink', linkname: '../usr/bin/tool', size: 0 },
  { ...base, name: 'h', type: 'link', linkname: 'y'.repeat(100), size: 0 },
  { ...base, name: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, size: 0 },
  { ...base, name: 'dev/sda', type: 'block', devMajor: 4095, devMinor: 1_048_575, size: 0 },
  { ...base, name: 'p', type: 'fifo', size: 0 },
  { ...base, uid: 8 ** 7 - 1, gid: 8 ** 7 - 1, size: 8 ** 11 - 1, mtime: 8 ** 11 - 1 },
  { ...base, uid: 1000, gid: 1000, size: 0, mtime: 0 },
  // A directory's size is not written, whatever the header says.
  { ...base, name: 'e/', type: 'dir', size: 4096 },
];

/** Headers that need a PAX header before their block. */
const pax: TarHeader[] = [
  { ...base, name: 'x'.repeat(101) },
  { ...base, name: 'data/ünïcødé.txt' },
  { ...base, name: 'bad-\udce9-name' }, // a byte that is not UTF-8, escaped (util/file-names.ts)
  { ...base, name: 's', type: 'symlink', linkname: 'z'.repeat(101), size: 0 },
  { ...base, name: 's', type: 'symlink', linkname: 'ünï', size: 0 },
  { ...base, uid: 8 ** 7 },
  { ...base, gid: 8 ** 7 },
  { ...base, size: 8 ** 11 },
  { ...base, xattrs: new Map([['security.capability', Buffer.from([1, 0, 0, 2])]]) },
];

describe('tar headers written in place', () => {
  it('gives encodeHeader’s bytes for every header that is one block, wherever it lands in a used buffer', () => {
    for (const header of plain) {
      for (const at of [0, 512, 389]) {
        const target = Buffer.alloc(2048, 0xaa);
        expect(encodeHeaderInto(header, target, at), header.name).toBe(true);
        expect(target.subarray(at, at + 512).equals(encodeHeader(header)), `${header.name} at ${at}`).toBe(
          true,
        );
        // Nothing outside its block is touched.
        expect(target.subarray(0, at).every((byte) => byte === 0xaa)).toBe(true);
        expect(target.subarray(at + 512).every((byte) => byte === 0xaa)).toBe(true);
      }
    }
  });

  it('declines anything that needs a PAX header, which encodeHeader then writes', () => {
    for (const header of pax) {
      const target = Buffer.alloc(1024);
      expect(encodeHeaderInto(header, target, 0), header.name).toBe(false);
      expect(encodeHeader(header).length, header.name).toBeGreaterThan(512);
    }
  });

  it('the ustar block is the one GNU tar and Go write: octal fields, magic, checksum', () => {
    const block = encodeHeader(base);
    expect(block.toString('latin1', 0, 7)).toBe('data/f1');
    expect(block.toString('latin1', 100, 108)).toBe('0000644\0');
    expect(block.toString('latin1', 124, 136)).toBe('00000000014\0');
    expect(block.toString('latin1', 136, 148)).toBe(`${(1_700_000_000).toString(8)}\0`);
    expect(block.toString('latin1', 257, 265)).toBe('ustar\x0000');
    expect(block[156]).toBe(0x30);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    expect(block.toString('latin1', 148, 156)).toBe(`${sum.toString(8).padStart(6, '0')}\0 `);
  });
});
