import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { encodeHeader, END_OF_ARCHIVE, paddingFor, type TarHeader } from '../../src/snapshot/tar-header.js';

export async function tempDir(prefix = 'stratum-snap-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeAll(...dirs: string[]): Promise<void> {
  // Retried: a store's close starts a background flush (the overlay helper's child) that may
  // still be writing its mark into the directory being removed (ENOTEMPTY).
  await Promise.all(
    dirs.map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })),
  );
}

export interface TreeItem {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly content?: string;
  readonly link?: string;
  readonly mtime?: number;
  /** index of the hard-link group (by first path in sorted order), if nlink > 1 */
  readonly linkGroup?: string;
}

/**
 * Describes a tree by what a layer must reproduce: type, mode, owner, content digest, link
 * target, hard-link groups; with `times`, whole-second mtimes of non-directories too.
 */
export async function describeTree(
  root: string,
  options: { times?: boolean } = {},
): Promise<Record<string, TreeItem>> {
  const out: Record<string, TreeItem> = {};
  const inodes = new Map<string, string>();
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const abs = join(root, path);
      const info = await lstat(abs);
      const type = info.isFile()
        ? 'file'
        : info.isDirectory()
          ? 'dir'
          : info.isSymbolicLink()
            ? 'symlink'
            : info.isFIFO()
              ? 'fifo'
              : info.isCharacterDevice()
                ? 'char'
                : 'other';
      let item: TreeItem = { type, mode: info.mode & 0o7777, uid: info.uid, gid: info.gid };
      if (type === 'file') {
        item = {
          ...item,
          content: createHash('sha256')
            .update(await readFile(abs))
            .digest('hex'),
        };
        if (info.nlink > 1) {
          const key = `${info.dev}:${info.ino}`;
          if (!inodes.has(key)) inodes.set(key, path);
          item = { ...item, linkGroup: inodes.get(key)! };
        }
      }
      if (type === 'symlink') item = { ...item, link: await readlink(abs) };
      if (options.times === true && type !== 'dir')
        item = { ...item, mtime: Math.floor(info.mtimeMs / 1000) };
      out[path] = item;
      if (type === 'dir') await walk(path);
    }
  }
  await walk('');
  return out;
}

export interface RawEntry {
  readonly header: TarHeader;
  readonly content?: Buffer;
  /** A typeflag byte to write instead of the header type's (e.g. 'V', a volume label). */
  readonly typeflag?: string;
}

/** Builds a tar in memory from raw headers: hostile layers are made this way, byte by byte. */
export function buildTar(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const content = entry.content ?? Buffer.alloc(0);
    const header = encodeHeader({ ...entry.header, size: content.length });
    if (entry.typeflag !== undefined) setTypeflag(header.subarray(header.length - 512), entry.typeflag);
    parts.push(header);
    parts.push(content, Buffer.alloc(paddingFor(content.length)));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Rewrites a header block's typeflag and its checksum (bytes summed with the field as spaces). */
function setTypeflag(block: Buffer, flag: string): void {
  block[156] = flag.charCodeAt(0);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

export function file(name: string, content: string, extra: Partial<TarHeader> = {}): RawEntry {
  return {
    header: { name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, ...extra },
    content: Buffer.from(content),
  };
}

export function dir(name: string, extra: Partial<TarHeader> = {}): RawEntry {
  return {
    header: { name, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, ...extra },
  };
}

export function symlinkEntry(name: string, target: string): RawEntry {
  return {
    header: {
      name,
      type: 'symlink',
      mode: 0o777,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 1_700_000_000,
      linkname: target,
    },
  };
}

export function hardlinkEntry(name: string, target: string): RawEntry {
  return {
    header: {
      name,
      type: 'link',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 1_700_000_000,
      linkname: target,
    },
  };
}

export function streamOf(data: Buffer): Readable {
  return Readable.from([data]);
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
