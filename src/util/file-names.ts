import { readdirSync, readlinkSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';

/**
 * File names are bytes; Node's string paths are UTF-8. A name that is not valid UTF-8 (a Latin-1
 * `caf\xe9`) read as a string comes back with U+FFFD in place of its bad bytes, and a string path
 * is encoded as UTF-8 again, so such a file can be listed but never opened, copied nor put in a
 * layer by its string name.
 *
 * The representation here is Python's "surrogateescape" (PEP 383): a name stays a plain string;
 * valid UTF-8 decodes as usual, and each byte of an invalid sequence becomes the lone surrogate
 * U+DC80..U+DCFF. Valid UTF-8 never decodes to a lone surrogate, so the mapping is one-to-one
 * and every valid name (the common case) is exactly the string Node gives: maps, sorting, joins
 * with '/' and the layer cache's JSON keep working unchanged. Only where a name meets the kernel
 * (fs calls: `fsPath`) or a tar (`nameBytes`) are the bytes rebuilt, and only names with a lone
 * surrogate (`String#isWellFormed` is false) take the slow path.
 */

/** The first byte of a lone surrogate that stands for a raw byte (0x80..0xFF). */
const ESCAPE_BASE = 0xdc00;

interface WellFormed {
  isWellFormed(): boolean;
}

/** True when `name` holds no lone surrogate, so it is its own UTF-8 (ES2024, in Node ≥ 20). */
export function isPlainName(name: string): boolean {
  return (name as unknown as WellFormed).isWellFormed();
}

/** Length of the valid UTF-8 sequence at `i`, or 0 (Unicode's table 3-7, no surrogates). */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i]!;
  if (lead < 0x80) return 1;
  const cont = (at: number, low = 0x80, high = 0xbf): boolean =>
    at < bytes.length && bytes[at]! >= low && bytes[at]! <= high;
  if (lead >= 0xc2 && lead <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const low = lead === 0xe0 ? 0xa0 : 0x80;
    const high = lead === 0xed ? 0x9f : 0xbf;
    return cont(i + 1, low, high) && cont(i + 2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const low = lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, low, high) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/** The name for these bytes: valid UTF-8 as is, each byte of an invalid sequence escaped. */
export function nameFromBytes(bytes: Uint8Array): string {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const text = buffer.toString('utf8');
  if (!text.includes('\ufffd')) return text;
  let out = '';
  let runStart = 0;
  let i = 0;
  while (i < buffer.length) {
    const length = sequenceLength(buffer, i);
    if (length > 0) {
      i += length;
      continue;
    }
    out += buffer.toString('utf8', runStart, i) + String.fromCharCode(ESCAPE_BASE + buffer[i]!);
    i++;
    runStart = i;
  }
  return out + buffer.toString('utf8', runStart);
}

/** The bytes a name stands for (the inverse of nameFromBytes). */
export function nameBytes(name: string): Buffer {
  if (isPlainName(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let runStart = 0;
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++; // a pair: part of the UTF-8 run
      continue;
    }
    if (unit < 0xdc80 || unit > 0xdcff) continue;
    parts.push(Buffer.from(name.slice(runStart, i), 'utf8'), Buffer.of(unit - ESCAPE_BASE));
    runStart = i + 1;
  }
  parts.push(Buffer.from(name.slice(runStart), 'utf8'));
  return Buffer.concat(parts);
}

/** What to hand Node's fs for a path: the string itself, or its bytes when it holds escapes. */
export function fsPath(path: string): string | Buffer {
  return isPlainName(path) ? path : nameBytes(path);
}

/**
 * A name as a terminal can show it: escaped bytes as `\xE9` (printed as they are, they would
 * turn into U+FFFD).
 */
export function displayName(name: string): string {
  if (isPlainName(name)) return name;
  return name.replace(
    /(?<![\ud800-\udbff])[\udc80-\udcff]/g,
    (unit) => `\\x${(unit.charCodeAt(0) - ESCAPE_BASE).toString(16).toUpperCase().padStart(2, '0')}`,
  );
}

/**
 * A binary string (one char per byte, tar-stream's `latin1` decoding) as a name. ASCII, the
 * common case, is returned as it is.
 */
export function nameFromBinary(binary: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(binary) ? binary : nameFromBytes(Buffer.from(binary, 'latin1'));
}

function holdsReplacement(names: readonly string[]): boolean {
  for (const name of names) if (name.includes('\ufffd')) return true;
  return false;
}

/**
 * The names in a directory. Listed as strings (fast); only a directory with a U+FFFD in some
 * name is listed again as bytes, so invalid names come back escaped instead of mangled.
 */
export function listDirSync(dir: string): string[] {
  const path = fsPath(dir);
  const names = readdirSync(path);
  return holdsReplacement(names) ? readdirSync(path, { encoding: 'buffer' }).map(nameFromBytes) : names;
}

export async function listDir(dir: string): Promise<string[]> {
  const path = fsPath(dir);
  const names = await readdir(path);
  return holdsReplacement(names) ? (await readdir(path, { encoding: 'buffer' })).map(nameFromBytes) : names;
}

/** A symlink's target, escaped like a name when it is not valid UTF-8. */
export function readLinkSync(path: string): string {
  const target = readlinkSync(fsPath(path));
  return target.includes('\ufffd')
    ? nameFromBytes(readlinkSync(fsPath(path), { encoding: 'buffer' }))
    : target;
}

export async function readLink(path: string): Promise<string> {
  const target = await readlink(fsPath(path));
  return target.includes('\ufffd')
    ? nameFromBytes(await readlink(fsPath(path), { encoding: 'buffer' }))
    : target;
}
