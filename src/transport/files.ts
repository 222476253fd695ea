import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { StratumError, errnoCode } from '../errors.js';
import { resolvedNow } from '../util/now.js';
import { resolveMember, type TarIndex } from './tar-index.js';

/**
 * Read access to the files of an image layout or archive, whether they sit in a directory or
 * inside a tar read in place. Readers (layout-reader, docker-archive-reader) are written against
 * this, so one reader serves `oci:` and `oci-archive:`.
 *
 * Names are relative, `/`-separated; a name that climbs out (`../x`) or is absolute is treated
 * as missing, because names come from untrusted documents (docker-archive's manifest.json).
 */
export interface FileAccess {
  /** For messages: the layout directory or the archive file. */
  readonly where: string;
  size(name: string): Promise<number | undefined>;
  /** Whole small file (JSON), or undefined when missing; larger than `limit` is an error. */
  readFile(name: string, limit?: number): Promise<Buffer | undefined>;
  /** Streams a file; undefined when missing. */
  open(name: string, signal?: AbortSignal): Promise<Readable | undefined>;
}

/** JSON documents larger than this are refused rather than read into memory. */
export const JSON_LIMIT = 64 * 1024 * 1024;

function safeName(name: string): string | undefined {
  if (name.startsWith('/') || name.includes('\0')) return undefined;
  const normalized = posix.normalize(name);
  return normalized === '..' || normalized.startsWith('../') ? undefined : normalized;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function tooLarge(where: string, name: string, size: number, limit: number): StratumError {
  return new StratumError(
    'INVALID_IMAGE',
    `${where}: ${name} is ${size} bytes, more than the ${limit} allowed for a JSON document`,
  );
}

export function directoryAccess(root: string): FileAccess {
  const path = (name: string): string | undefined => {
    const safe = safeName(name);
    return safe === undefined ? undefined : join(root, safe);
  };
  // Synchronous: one stat(2) or a small read, on a build's path (the base image's index.json,
  // manifest and config), where each asynchronous call was a thread-pool round trip.
  const sizeNow = (name: string): number | undefined => {
    const full = path(name);
    if (full === undefined) return undefined;
    try {
      const info = statSync(full);
      return info.isFile() ? info.size : undefined;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return undefined;
      throw error;
    }
  };
  const size = (name: string): Promise<number | undefined> => resolvedNow(() => sizeNow(name));
  const readNow = (name: string, limit: number): Buffer | undefined => {
    const length = sizeNow(name);
    if (length === undefined) return undefined;
    if (length > limit) throw tooLarge(root, name, length, limit);
    return readFileSync(path(name)!);
  };
  return {
    where: root,
    size,
    readFile(name, limit = JSON_LIMIT) {
      return resolvedNow(() => readNow(name, limit));
    },
    async open(name, signal) {
      if ((await size(name)) === undefined) return undefined;
      // A stream made with an already-aborted signal errors before its reader can listen
      // (an uncaught AbortError on Node 24): reject the open instead.
      signal?.throwIfAborted();
      return createReadStream(path(name)!, signal ? { signal } : {});
    },
  };
}

export function tarAccess(index: TarIndex, where: string): FileAccess {
  const member = (name: string) => {
    const safe = safeName(name);
    return safe === undefined ? undefined : resolveMember(index, safe);
  };
  const openMember = (name: string, signal?: AbortSignal): Readable | undefined => {
    const found = member(name);
    if (found === undefined) return undefined;
    // createReadStream's `end` is inclusive and cannot express an empty range.
    if (found.size === 0) return Readable.from([]);
    signal?.throwIfAborted(); // as in directoryAccess.open
    return createReadStream(index.file, {
      start: found.offset,
      end: found.offset + found.size - 1,
      ...(signal ? { signal } : {}),
    });
  };
  return {
    where,
    size: (name) => Promise.resolve(member(name)?.size),
    async readFile(name, limit = JSON_LIMIT) {
      const found = member(name);
      if (found === undefined) return undefined;
      if (found.size > limit) throw tooLarge(where, name, found.size, limit);
      return collect(openMember(name)!);
    },
    open: (name, signal) => Promise.resolve(openMember(name, signal)),
  };
}

/** The first `count` bytes of a file (fewer if it is shorter). */
export async function readHead(access: FileAccess, name: string, count: number): Promise<Buffer> {
  const stream = await access.open(name);
  if (stream === undefined) throw new StratumError('NOT_FOUND', `${access.where}: ${name} is missing`);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= count) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, count);
}
