import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, lstat, lutimes, mkdir, open, rm, symlink, chmod, lchown, utimes } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Header } from 'tar-stream';
import { errnoCode, StratumError } from '../../errors.js';
import { createDecompressor } from '../../oci/compression.js';
import { fsPath } from '../../util/file-names.js';
import { byteExactExtract } from '../../snapshot/tar-reader.js';
import { cleanPath, resolveInRoot } from './paths.js';

/**
 * ADD's local archives: detected by content (magic bytes, then a valid tar header inside), never
 * by file name, and extracted as safely as COPY writes: every entry lands inside the
 * destination directory, `..` names are refused, and symlinks (absolute ones included) are
 * resolved as if the destination were the root, as Docker's chrooted untar does.
 * A zstd archive is copied as a file, not extracted: Docker 20.10's ADD does the same (its
 * DecompressStream knows gzip, bzip2 and xz, measured here; later Docker releases added zstd).
 */

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'none';

export function compressionOf(head: Buffer): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])))
    return 'xz';
  return 'none';
}

/** A 512-byte block is a tar header when its checksum field matches (as Go's tar reader checks). */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.subarray(0, 512).every((b) => b === 0)) return false;
  const field = block
    .toString('latin1', 148, 156)
    .replace(/[\0 ]+$/g, '')
    .trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const expected = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return expected === unsigned || expected === signed;
}

async function readHead(path: string, bytes: number): Promise<Buffer> {
  const handle = await open(fsPath(path), 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

interface Decompressed {
  readonly stream: Readable;
  /** Settles when the decompressor has finished; rejects when it failed. */
  readonly done: Promise<void>;
  /** Stops reading early (the decompressor's end is then not an error). */
  readonly stop: () => void;
}

/** The decompressed bytes of a file as a stream (gzip in-process; bzip2/xz through their tools). */
async function decompressed(path: string, compression: Compression): Promise<Decompressed> {
  if (compression === 'none') {
    const stream = createReadStream(fsPath(path));
    return { stream, done: Promise.resolve(), stop: () => stream.destroy() };
  }
  if (compression === 'gzip') {
    const inflate = createDecompressor(compression, `ADD ${path}`)!;
    const out = new PassThrough();
    let stopped = false;
    const done = pipeline(createReadStream(fsPath(path)), inflate, out).catch((error: unknown) => {
      if (!stopped) throw error;
    });
    return {
      stream: out,
      done,
      stop: () => {
        stopped = true;
        out.destroy();
      },
    };
  }
  const handle = await open(fsPath(path), 'r');
  const tool = compression === 'bzip2' ? 'bzip2' : 'xz';
  const child = spawn(tool, ['-dc'], { stdio: [handle.fd, 'pipe', 'pipe'] });
  const { stdout, stderr: stderrStream } = child;
  if (stdout === null || stderrStream === null) throw new Error(`${tool}: no output pipes`);
  let stderr = '';
  let stopped = false;
  stderrStream.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (error) => {
      void handle.close();
      reject(
        new StratumError(
          'UNSUPPORTED',
          `cannot decompress ${path}: ${tool} is not installed (apt-get install ${tool === 'xz' ? 'xz-utils' : 'bzip2'}): ${error.message}`,
        ),
      );
    });
    child.on('close', (code, signal) => {
      void handle.close();
      if (code === 0 || stopped) resolve();
      else
        reject(
          new StratumError(
            'IO',
            `cannot decompress ${path}: ${tool} exited ${code ?? signal}: ${stderr.trim()}`,
          ),
        );
    });
  });
  return {
    stream: stdout,
    done,
    stop: () => {
      stopped = true;
      stdout.destroy();
      if (child.exitCode === null) child.kill('SIGTERM');
    },
  };
}

async function firstBytes(stream: Readable, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    chunks.push(buf);
    total += buf.length;
    if (total >= bytes) break;
  }
  return Buffer.concat(chunks).subarray(0, bytes);
}

export async function isTarArchive(path: string): Promise<boolean> {
  const head = await readHead(path, 512);
  const compression = compressionOf(head);
  if (compression === 'none') return isTarHeader(head);
  const source = await decompressed(path, compression);
  let block: Buffer;
  try {
    block = await firstBytes(source.stream, 512);
  } catch {
    return false;
  } finally {
    source.stop();
    await source.done.catch(() => undefined);
  }
  return isTarHeader(block);
}

export interface ExtractResult {
  readonly entries: number;
}

function safeName(name: string, what: string): string | undefined {
  const cleaned = cleanPath(name.startsWith('/') ? name.slice(1) : name);
  if (cleaned === '.') return undefined;
  if (cleaned === '..' || cleaned.startsWith('../')) {
    throw new StratumError('UNSAFE_PATH', `${what}: archive entry "${name}" points outside the destination`);
  }
  return cleaned;
}

async function removeExisting(target: string, keepDir: boolean): Promise<boolean> {
  try {
    const st = await lstat(fsPath(target));
    if (keepDir && st.isDirectory()) return true;
    await rm(fsPath(target), { recursive: true, force: true });
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  return false;
}

/** The host directory that an entry named `name` goes into, created (0755) when missing. */
async function parentFor(destDir: string, name: string, what: string): Promise<string> {
  const slash = name.lastIndexOf('/');
  const parentRel = slash < 0 ? '' : name.slice(0, slash);
  const parent = await resolveInRoot(destDir, parentRel, { followFinal: true });
  if (parent.missing) {
    await mkdir(fsPath(parent.hostPath), { recursive: true, mode: 0o755 });
  }
  const st = await lstat(fsPath(parent.hostPath));
  if (!st.isDirectory()) {
    throw new StratumError('IO', `${what}: archive entry "${name}": ${parent.inRoot} is not a directory`);
  }
  return parent.hostPath;
}

type LooseHeader = { readonly name: string } & {
  readonly [K in Exclude<keyof Header, 'name'>]?: Header[K] | null;
};

async function setMeta(target: string, header: LooseHeader, isLink: boolean): Promise<void> {
  await lchown(fsPath(target), header.uid ?? 0, header.gid ?? 0);
  if (!isLink) await chmod(fsPath(target), (header.mode ?? 0o644) & 0o7777);
}

/**
 * Extracts a tar archive (plain, gzip, bzip2 or xz) into `destDir`, a host directory that must
 * already exist. Owners, modes and mtimes come from the archive, as Docker's ADD keeps them.
 * Device nodes and FIFOs are skipped (creating them needs mknod, which Node does not offer).
 */
export async function extractArchive(
  archivePath: string,
  destDir: string,
  options: { readonly what?: string; readonly signal?: AbortSignal } = {},
): Promise<ExtractResult> {
  const what = options.what ?? `ADD ${archivePath}`;
  const head = await readHead(archivePath, 6);
  const { stream, done, stop } = await decompressed(archivePath, compressionOf(head));
  // Old (v7, pre-POSIX) headers are accepted; names keep their bytes (snapshot/tar-reader.ts).
  const extract = byteExactExtract({ allowUnknownFormat: true });
  const feed = pipeline(stream, extract, { ...(options.signal ? { signal: options.signal } : {}) });
  feed.catch(() => undefined); // surfaced through the iterator or awaited below
  const dirTimes: { path: string; mtime: Date }[] = [];
  let entries = 0;
  try {
    for await (const entry of extract) {
      // The runtime leaves some fields null or unset (linkname of a file, mode of odd archives)
      // although the typings promise them.
      const header: LooseHeader = entry.header;
      const name = safeName(header.name, what);
      if (name === undefined) {
        entry.resume();
        continue;
      }
      const parent = await parentFor(destDir, name, what);
      const target = join(parent, basename(name));
      const mtime = header.mtime ?? new Date(0);
      entries++;
      switch (header.type) {
        case 'file':
        case 'contiguous-file': {
          await removeExisting(target, false);
          await pipeline(entry, createWriteStream(fsPath(target), { mode: 0o600, flags: 'wx' }));
          await setMeta(target, header, false);
          await utimes(fsPath(target), mtime, mtime);
          break;
        }
        case 'directory': {
          entry.resume();
          const kept = await removeExisting(target, true);
          if (!kept) await mkdir(fsPath(target), { mode: 0o755 });
          await setMeta(target, header, false);
          dirTimes.push({ path: target, mtime });
          break;
        }
        case 'symlink': {
          entry.resume();
          await removeExisting(target, false);
          await symlink(fsPath(header.linkname ?? ''), fsPath(target));
          await setMeta(target, header, true);
          await lutimes(fsPath(target), mtime, mtime);
          break;
        }
        case 'link': {
          entry.resume();
          const linkName = safeName(header.linkname ?? '', what);
          if (linkName === undefined) {
            throw new StratumError('UNSAFE_PATH', `${what}: hard link "${header.name}" has no target`);
          }
          const source = await resolveInRoot(destDir, linkName, { followFinal: false });
          await removeExisting(target, false);
          await link(fsPath(source.hostPath), fsPath(target)).catch((error: unknown) => {
            // Named by the archive's own paths: the host path is a temporary directory.
            if (errnoCode(error) !== 'ENOENT') throw error;
            throw new StratumError(
              'BUILD_FAILED',
              `${what}: hard link "${header.name}" points to "${linkName}", which is not in the archive before it`,
            );
          });
          break;
        }
        case 'block-device':
        case 'character-device':
        case 'fifo':
        case undefined:
        case null:
          // Devices and FIFOs are skipped; pax/gnu headers never get here (tar-stream consumes them).
          entry.resume();
          entries--;
      }
    }
    await feed;
    await done;
  } catch (error) {
    stop();
    extract.destroy();
    await done.catch(() => undefined);
    if (error instanceof StratumError) throw error;
    throw new StratumError(
      'IO',
      `${what}: cannot extract archive: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
  for (const { path, mtime } of dirTimes.reverse()) await utimes(fsPath(path), mtime, mtime);
  return { entries };
}
