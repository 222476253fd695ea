import { open, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { StratumError } from '../errors.js';

/**
 * Reads an uncompressed tar archive IN PLACE: one pass over the 512-byte headers (never the
 * data) records where each member's bytes start, so an image archive of any size is opened
 * without copying or buffering it, and any member can later be streamed with a byte range.
 *
 * Understands ustar (with prefix), PAX `x` headers (path, linkpath, size), GNU long names
 * (`L`, `K`) and base-256 sizes. A member whose data runs past the end of the file, or a header
 * whose checksum is wrong, is a truncated/corrupt archive: INVALID_IMAGE naming the file.
 */

export type TarMemberType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarMember {
  readonly name: string;
  readonly type: TarMemberType;
  /** Byte offset of the member's data in the archive. */
  readonly offset: number;
  readonly size: number;
  readonly linkname: string;
}

export interface TarIndex {
  readonly file: string;
  readonly members: ReadonlyMap<string, TarMember>;
}

const BLOCK = 512;

/** `./a//b/` → `a/b`; the name members are looked up by. */
export function normalizeMemberName(name: string): string {
  const normalized = posix.normalize(`/${name}`).slice(1);
  return normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

function cString(buffer: Buffer, start: number, length: number): string {
  const field = buffer.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

function parseNumber(buffer: Buffer, start: number, length: number): number {
  const field = buffer.subarray(start, start + length);
  if ((field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian with the top bit of the first byte as the marker.
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const text = cString(buffer, start, length).trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  const stored = parseNumber(header, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return stored === sum;
}

function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length) {
    const space = data.indexOf(0x20, position);
    if (space === -1) break;
    const length = Number.parseInt(data.subarray(position, space).toString('ascii'), 10);
    if (!Number.isFinite(length) || length <= 0) break;
    const record = data.subarray(space + 1, position + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals !== -1) records.set(record.slice(0, equals), record.slice(equals + 1));
    position += length;
  }
  return records;
}

async function readExactly(handle: FileHandle, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buffer : buffer.subarray(0, done);
}

function typeOf(flag: string): TarMemberType {
  switch (flag) {
    case '0':
    case '\0':
    case '':
    case '7':
      return 'file';
    case '5':
      return 'directory';
    case '2':
      return 'symlink';
    case '1':
      return 'hardlink';
    default:
      return 'other';
  }
}

/** `what` names the archive in errors (e.g. `oci-archive:/tmp/x.tar`). */
export async function indexTar(file: string, what: string, signal?: AbortSignal): Promise<TarIndex> {
  const handle = await open(file, 'r');
  try {
    const fileSize = (await handle.stat()).size;
    const members = new Map<string, TarMember>();
    let position = 0;
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax = new Map<string, string>();
    let sawEnd = false;
    while (position + BLOCK <= fileSize) {
      signal?.throwIfAborted();
      const header = await readExactly(handle, BLOCK, position);
      if (header.every((byte) => byte === 0)) {
        sawEnd = true;
        break;
      }
      if (!checksumOk(header)) {
        throw new StratumError(
          'INVALID_IMAGE',
          `${what}: corrupt tar header at offset ${position} (not a tar archive, or damaged)`,
        );
      }
      const flag = String.fromCharCode(header[156]!);
      const magic = cString(header, 257, 6);
      const prefix = magic.startsWith('ustar') ? cString(header, 345, 155) : '';
      const headerName = prefix ? `${prefix}/${cString(header, 0, 100)}` : cString(header, 0, 100);
      const size = pax.has('size') ? Number(pax.get('size')) : parseNumber(header, 124, 12);
      const dataStart = position + BLOCK;
      const dataEnd = dataStart + size;
      const name = pax.get('path') ?? longName ?? headerName;
      if (dataEnd > fileSize) {
        throw new StratumError(
          'INVALID_IMAGE',
          `${what}: truncated archive: member "${name}" needs ${size} bytes at offset ${dataStart}, the file has ${fileSize}`,
        );
      }
      position = dataStart + Math.ceil(size / BLOCK) * BLOCK;
      if (flag === 'x' || flag === 'L' || flag === 'K') {
        const data = await readExactly(handle, size, dataStart);
        if (flag === 'x') pax = parsePax(data);
        else if (flag === 'L') longName = cString(data, 0, data.length);
        else longLink = cString(data, 0, data.length);
        continue;
      }
      if (flag === 'g') continue; // global PAX header: nothing stratum needs
      const linkname = pax.get('linkpath') ?? longLink ?? cString(header, 157, 100);
      const normalized = normalizeMemberName(name);
      members.set(normalized, { name: normalized, type: typeOf(flag), offset: dataStart, size, linkname });
      pax = new Map();
      longName = undefined;
      longLink = undefined;
    }
    if (!sawEnd && position !== fileSize) {
      throw new StratumError(
        'INVALID_IMAGE',
        `${what}: truncated archive: a partial header of ${fileSize - position} bytes at offset ${position}`,
      );
    }
    return { file, members };
  } finally {
    await handle.close();
  }
}

/**
 * Finds a member by name, following symlinks and hard links inside the archive (docker save
 * links identical layers to one copy). Links that leave the archive resolve to nothing.
 */
export function resolveMember(index: TarIndex, name: string): TarMember | undefined {
  let current = normalizeMemberName(name);
  for (let hops = 0; hops < 16; hops++) {
    const member = index.members.get(current);
    if (member === undefined) return undefined;
    if (member.type === 'file') return member;
    if (member.type !== 'symlink' && member.type !== 'hardlink') return undefined;
    const target =
      member.type === 'symlink' && !member.linkname.startsWith('/')
        ? posix.join(posix.dirname(member.name), member.linkname)
        : member.linkname;
    const normalized = posix.normalize(target);
    if (normalized.startsWith('..')) return undefined;
    current = normalizeMemberName(normalized);
  }
  return undefined;
}
