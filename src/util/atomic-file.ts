import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  createReadStream,
  fsync,
  openSync,
  renameSync,
  rmSync,
  write,
  writeFileSync,
} from 'node:fs';
import { chmod, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StratumError, errnoCode, isStratumError } from '../errors.js';
import { promisify } from 'node:util';
import { makeDirectories, makeDirectoriesSync } from './directories.js';
import { descriptorOf, planOutput } from './output-path.js';
import { ownedName } from './owner.js';
import { makeOwnedTempDir } from './temp-dir.js';

/**
 * The one way stratum replaces a small file: write a temporary file beside it (same directory,
 * so the rename is atomic), flush it to disk, rename it over the destination, and flush the
 * directory so the rename survives a crash. A reader sees the old content or the new, never a
 * part; on failure the temporary file is removed. Temporary names carry the writer's PID
 * (owner.ts) so that a crash's leftovers can be told from a live writer's.
 */
export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644, less the umask). */
  readonly mode?: number;
  /** Create missing parent directories (with this mode when given). */
  readonly createParents?: boolean;
  /**
   * Flush the file before the rename and the directory after it (default true). Without, a
   * killed process still leaves the old content or the new (rename is atomic), but after a
   * crash of the machine the file may be missing, old, or empty or cut short. Only for files
   * whose readers take any of those as "not there" and lose nothing but work: the layer cache's
   * JSON records (a torn one fails to parse and is a miss), never a blob, an output or a
   * credential.
   */
  readonly durable?: boolean;
}

export function temporarySibling(destination: string): string {
  return join(
    dirname(destination),
    ownedName(`.${basename(destination)}.tmp-`, randomBytes(6).toString('hex')),
  );
}

/**
 * Up to this size the file is written with synchronous calls, and only the flushes wait
 * asynchronously: a cache entry, index.json, a record. Each asynchronous open, write, close and
 * rename was a thread-pool round trip, and a build writes such a file at every step.
 */
const WRITE_NOW_BYTES = 256 * 1024;

export async function writeFileAtomic(
  destination: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  if (data.length <= WRITE_NOW_BYTES) return writeSmallFileAtomic(destination, data, options);
  if (options.createParents === true) await makeDirectories(dirname(destination));
  const temporary = temporarySibling(destination);
  try {
    const handle = await open(temporary, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    // The umask may have narrowed the mode; a credential file must be exactly what was asked.
    if (options.mode !== undefined) await chmod(temporary, options.mode);
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  if (options.durable !== false) await syncDirectory(dirname(destination));
}

/** writeFileAtomic for small data: the same steps, synchronous but for the two flushes. */
async function writeSmallFileAtomic(
  destination: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> {
  const durable = options.durable !== false;
  if (options.createParents === true) makeDirectoriesSync(dirname(destination));
  const temporary = temporarySibling(destination);
  try {
    const fd = openSync(temporary, 'wx', options.mode ?? 0o644);
    try {
      writeFileSync(fd, data);
      if (durable) await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
    // The umask may have narrowed the mode; a credential file must be exactly what was asked.
    if (options.mode !== undefined) chmodSync(temporary, options.mode);
    renameSync(temporary, destination);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  if (durable) await syncDirectory(dirname(destination));
}

/**
 * Every file the user names for an output (archives, `type=tar`, --iidfile, --metadata-file,
 * analyze --html) is written by one of the two functions below, which follow output-path.ts: a
 * regular file (or none) is replaced atomically as above; a FIFO or character device is written
 * through once the content is complete, and stays what it is; the rest is refused. `label` is
 * the output as the user wrote it, for errors.
 */
export interface OutputWriteOptions {
  readonly label?: string;
  /** Where content bound for a FIFO or device is assembled (default: temp-dir.ts's root). */
  readonly tmpDir?: string;
}

/** Writes `data` as the output file `destination`; its directory must exist. */
export async function writeOutputFile(
  destination: string,
  data: string | Uint8Array,
  options: OutputWriteOptions = {},
): Promise<void> {
  const label = options.label ?? destination;
  if ((await planOutput(destination, 'file', label)) === 'write-through') {
    await writeThrough(destination, label, [typeof data === 'string' ? Buffer.from(data) : data]);
    return;
  }
  await requireParentDirectory(destination, label);
  await writeFileAtomic(destination, data);
}

/**
 * Runs `write(temporary)` to make the whole output, then puts it at `destination` (renamed over a
 * regular file, copied through a FIFO or device); the destination's directory must exist. On
 * failure the temporary is removed and the destination is as it was.
 */
export async function writeOutput(
  destination: string,
  write: (temporary: string) => Promise<void>,
  options: OutputWriteOptions = {},
): Promise<void> {
  const label = options.label ?? destination;
  if ((await planOutput(destination, 'file', label)) === 'write-through') {
    // Assembled privately first, so a failed build sends a reader nothing rather than a part.
    const scratch = await makeOwnedTempDir('stratum-output-', options.tmpDir);
    try {
      const temporary = join(scratch, 'content');
      await write(temporary);
      await writeThrough(destination, label, createReadStream(temporary));
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    return;
  }
  await requireParentDirectory(destination, label);
  const temporary = temporarySibling(destination);
  try {
    await write(temporary);
    await syncFile(temporary);
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true, recursive: true });
    throw error;
  }
  await syncDirectory(dirname(destination));
}

/**
 * Opens an existing FIFO or character device for writing (never creating, never truncating) and
 * writes `chunks` to it; opening a FIFO waits for its reader, as any writer of a FIFO does. A
 * descriptor path (/dev/stdout) is written through the descriptor itself: reopening a file would
 * start at 0, over what the process wrote before, and a socket cannot be reopened at all.
 */
async function writeThrough(
  destination: string,
  label: string,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<void> {
  const failed = (error: unknown): StratumError =>
    isStratumError(error)
      ? error
      : new StratumError(
          'IO',
          `${label}: cannot write to ${destination} (${error instanceof Error ? error.message.replace(/, \w+( '.*')?$/, '') : String(error)})`,
          { cause: error },
        );
  try {
    const descriptor = descriptorOf(destination);
    if (descriptor !== undefined) {
      for await (const chunk of chunks) await writeAll(descriptor, chunk);
      return;
    }
    const handle = await open(destination, constants.O_WRONLY | constants.O_NOCTTY);
    try {
      // What was planned may have changed since: only ever write through a FIFO or device.
      const info = await handle.stat();
      if (!info.isFIFO() && !info.isCharacterDevice())
        throw new StratumError(
          'IO',
          `${label}: ${destination} changed while the build ran; nothing was written`,
        );
      for await (const chunk of chunks) await writeAll(handle.fd, chunk);
    } finally {
      await handle.close().catch(() => undefined);
    }
  } catch (error) {
    throw failed(error);
  }
}

/** Writes all of `chunk` to `fd` (a pipe may take part of it at a time). */
async function writeAll(fd: number, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.length;) {
    offset += await new Promise<number>((done, fail) => {
      write(fd, chunk, offset, chunk.length - offset, null, (error, written) => {
        if (error) fail(error);
        else done(written);
      });
    });
  }
}

/** The destination's directory must exist: an output never creates directories on its own. */
export async function requireParentDirectory(destination: string, label = destination): Promise<void> {
  const parent = dirname(destination);
  try {
    if (!(await stat(parent)).isDirectory())
      throw new StratumError('NOT_FOUND', `${label}: ${parent} is not a directory`);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT')
      throw new StratumError('NOT_FOUND', `${label}: directory ${parent} does not exist`);
    throw error;
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flushes a directory's entries (a rename in it); some filesystems refuse, which is fine. */
export async function syncDirectory(dir: string): Promise<void> {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    await fsyncFd(fd).catch(() => undefined);
  } finally {
    closeSync(fd);
  }
}

/** fsync(2) on the thread pool: the one call here that waits for the disk. */
const fsyncFd = promisify(fsync);
