/**
 * Encodes tar headers the way Go's archive/tar (and so Docker and BuildKit) does for layers:
 * USTAR when every field fits, otherwise a PAX extended header ('x') before it carrying the
 * long or non-ASCII path/linkpath, big ids or sizes, and binary xattrs. Names are bytes: a name
 * that is not UTF-8 (escaped in its string, see oci/file-names.ts) is written as the bytes it
 * stands for, in a PAX record as Go writes it (raw bytes, no `hdrcharset`); with a PAX header the
 * ustar fields keep only the name's ASCII bytes, as Go's toASCII does.
 *
 * tar-stream's packer is not used for writing because it cannot carry a binary PAX value (the
 * `security.capability` xattr is raw bytes), truncates uid/gid above 0o7777777 to 7777777, and
 * names the real header "PaxHeader" after a PAX record; this module is small and is checked
 * against GNU tar and tar-stream's parser in the tests.
 */

import { nameBytes } from '../util/file-names.js';

export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** in-layer name; directories end with '/' */
  readonly name: string;
  readonly type: TarType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** whole seconds */
  readonly mtime: number;
  readonly linkname?: string;
  readonly devMajor?: number;
  readonly devMinor?: number;
  /** PAX records with binary values, e.g. SCHILY.xattr.security.capability */
  readonly xattrs?: ReadonlyMap<string, Buffer>;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** USTAR octal field: zero-padded digits then NUL, as Go's formatOctal writes them. */
function fitsOctal(value: number, width: number): boolean {
  return value >= 0 && value < 8 ** (width - 1);
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  const digits = value.toString(8).padStart(width - 1, '0');
  buf.write(digits, offset, width - 1, 'latin1');
  buf[offset + width - 1] = 0;
}

function isAscii(value: Buffer): boolean {
  for (let i = 0; i < value.length; i++) if (value[i]! > 0x7f) return false;
  return true;
}

/** Go's toASCII: what a PAX header's ustar fields keep of a name (its ASCII bytes). */
function asciiOnly(value: Buffer): Buffer {
  if (isAscii(value)) return value;
  // A plain loop: TypedArray#filter's callback per byte cost more than the rest of the header.
  const out = Buffer.allocUnsafe(value.length);
  let length = 0;
  for (let i = 0; i < value.length; i++) if (value[i]! <= 0x7f) out[length++] = value[i]!;
  return out.subarray(0, length);
}

function paxRecord(key: string, value: Buffer): Buffer {
  // "%d %s=%s\n" where %d counts the whole record including its own digits.
  const body = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`, 'utf8'), value, Buffer.from('\n')]);
}

const USTAR_MAGIC = Buffer.from('ustar\x0000', 'latin1');
const USTAR_MAGIC_SUM = USTAR_MAGIC.reduce((sum, byte) => sum + byte, 0);

/**
 * writeOctal for a value that fits, digit by digit: no strings made (a layer of 20,000 small
 * files wrote 140,000 of these fields). Returns the sum of the bytes written, for the checksum.
 */
function putOctal(buf: Buffer, offset: number, width: number, value: number): number {
  let rest = value;
  let sum = 0;
  for (let at = offset + width - 2; at >= offset; at--) {
    const digit = rest % 8;
    buf[at] = 0x30 + digit;
    sum += 0x30 + digit;
    rest = (rest - digit) / 8;
  }
  buf[offset + width - 1] = 0;
  return sum;
}

/** writeOctal, by the faster route where the value fits (where not, writeOctal's truncation). */
function octalField(buf: Buffer, offset: number, width: number, value: number): number {
  if (fitsOctal(value, width)) return putOctal(buf, offset, width, value);
  writeOctal(buf, offset, width, value);
  return byteSum(buf, offset, offset + width);
}

function byteSum(buf: Buffer, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += buf[i]!;
  return sum;
}

/**
 * Everything of a ustar block at `at` but its name and linkname (already there, summing to
 * `namesSum`, the rest of the block zero): the numeric fields, type, magic and the checksum,
 * summed as they are written rather than by reading the block back.
 */
function finishBlock(
  buf: Buffer,
  at: number,
  typeflag: number,
  header: TarHeader,
  size: number,
  namesSum: number,
): void {
  let sum = namesSum;
  sum += putOctal(buf, at + 100, 8, header.mode & 0o7777);
  sum += putOctal(buf, at + 108, 8, fitsOctal(header.uid, 8) ? header.uid : 0);
  sum += putOctal(buf, at + 116, 8, fitsOctal(header.gid, 8) ? header.gid : 0);
  sum += putOctal(buf, at + 124, 12, fitsOctal(size, 12) ? size : 0);
  sum += putOctal(buf, at + 136, 12, fitsOctal(header.mtime, 12) ? header.mtime : 0);
  sum += 8 * 0x20; // the checksum field counts as spaces while summing
  buf[at + 156] = typeflag;
  sum += typeflag;
  USTAR_MAGIC.copy(buf, at + 257);
  sum += USTAR_MAGIC_SUM;
  // uname/gname stay empty: ids are numeric so a layer means the same on every host.
  if (header.type === 'char' || header.type === 'block') {
    sum += octalField(buf, at + 329, 8, header.devMajor ?? 0);
    sum += octalField(buf, at + 337, 8, header.devMinor ?? 0);
  } else {
    sum += putOctal(buf, at + 329, 8, 0);
    sum += putOctal(buf, at + 337, 8, 0);
  }
  putOctal(buf, at + 148, 7, sum); // six digits and a NUL (a sum is at most 512 * 255)
  buf[at + 155] = 0x20;
}

function encodeBlock(
  name: Buffer,
  typeflag: number,
  header: TarHeader,
  size: number,
  linkname: Buffer,
): Buffer {
  const buf = Buffer.alloc(BLOCK);
  name.copy(buf, 0, 0, Math.min(name.length, 100));
  linkname.copy(buf, 157, 0, Math.min(linkname.length, 100));
  finishBlock(buf, 0, typeflag, header, size, byteSum(buf, 0, 100) + byteSum(buf, 157, 257));
  return buf;
}

/**
 * Writes `text` at `at` when it is ASCII and at most `width` long (its bytes are its chars);
 * returns the sum of its bytes, or -1 when it is not such.
 */
function putAscii(buf: Buffer, at: number, text: string, width: number): number {
  if (text.length > width) return -1;
  let sum = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit > 0x7f) return -1;
    buf[at + i] = unit;
    sum += unit;
  }
  return sum;
}

/**
 * The common case of encodeHeader written straight into `target` at `at` (512 bytes there): a
 * header that is one ustar block, with an ASCII name and linkname. Returns false, having
 * written nothing that counts, for anything that needs a PAX header: the caller uses
 * encodeHeader then. The bytes are encodeHeader's (test/snapshot/layer-tar.test.ts compares).
 */
export function encodeHeaderInto(header: TarHeader, target: Buffer, at: number): boolean {
  if (header.xattrs !== undefined) return false;
  const size = header.type === 'file' ? header.size : 0;
  if (!fitsOctal(header.uid, 8) || !fitsOctal(header.gid, 8) || !fitsOctal(size, 12)) return false;
  target.fill(0, at, at + BLOCK);
  const nameSum = putAscii(target, at, header.name, 100);
  if (nameSum < 0) return false;
  const linkSum = header.linkname === undefined ? 0 : putAscii(target, at + 157, header.linkname, 100);
  if (linkSum < 0) return false;
  finishBlock(target, at, TYPEFLAG[header.type], header, size, nameSum + linkSum);
  return true;
}

/** Returns the header block(s) for one entry: one USTAR block, or a PAX header, its data and one. */
export function encodeHeader(header: TarHeader): Buffer {
  const records: Buffer[] = [];
  const name = nameBytes(header.name);
  const linkname = nameBytes(header.linkname ?? '');
  const size = header.type === 'file' ? header.size : 0;

  if (name.length > 100 || !isAscii(name)) records.push(paxRecord('path', name));
  if (linkname.length > 100 || !isAscii(linkname)) records.push(paxRecord('linkpath', linkname));
  if (!fitsOctal(header.uid, 8)) records.push(paxRecord('uid', Buffer.from(String(header.uid))));
  if (!fitsOctal(header.gid, 8)) records.push(paxRecord('gid', Buffer.from(String(header.gid))));
  if (!fitsOctal(size, 12)) records.push(paxRecord('size', Buffer.from(String(size))));
  if (header.xattrs) {
    const keys = [...header.xattrs.keys()].sort();
    for (const key of keys) records.push(paxRecord(`SCHILY.xattr.${key}`, header.xattrs.get(key)!));
  }

  if (records.length === 0) return encodeBlock(name, TYPEFLAG[header.type], header, size, linkname);
  const main = encodeBlock(asciiOnly(name), TYPEFLAG[header.type], header, size, asciiOnly(linkname));

  const data = Buffer.concat(records);
  // Go names the extended header "<dir>/PaxHeaders.0/<base>"; it is never extracted as a file.
  const slash = header.name.replace(/\/$/, '').lastIndexOf('/');
  const dir = slash < 0 ? '' : header.name.slice(0, slash + 1);
  const base = header.name.replace(/\/$/, '').slice(slash + 1);
  const paxName = asciiOnly(nameBytes(`${dir}PaxHeaders.0/${base}`));
  const paxHeader = encodeBlock(
    paxName,
    0x78,
    { ...header, mode: header.mode, type: 'file' },
    data.length,
    Buffer.alloc(0),
  );
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return Buffer.concat([paxHeader, data, Buffer.alloc(pad), main]);
}

/**
 * SOURCE_DATE_EPOCH applied to a header block stratum wrote (encodeBlock): an mtime after
 * `epoch` becomes `epoch` and the checksum is made again, so a layer written without the epoch
 * becomes, block for block, the layer written with it (a whiteout's time is the epoch). Returns the block's data size (the PAX
 * `size` record, when the entry had one, is the caller's to apply).
 */
export function clampHeaderTime(block: Buffer, epoch: number, whiteout = false): number {
  const mtime = readOctal(block, 136, 12);
  // A whiteout (and its PAX header) takes the epoch itself, as tar-entries.ts writes it.
  if (mtime > epoch || (whiteout && mtime !== epoch)) {
    writeOctal(block, 136, 12, fitsOctal(epoch, 12) ? epoch : 0);
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += block[i]!;
    block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'latin1');
    block[154] = 0;
    block[155] = 0x20;
  }
  return readOctal(block, 124, 12);
}

function readOctal(block: Buffer, offset: number, length: number): number {
  const text = block
    .toString('latin1', offset, offset + length)
    .replace(/[\0 ]+$/, '')
    .trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2);
