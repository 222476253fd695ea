import { accessSync, constants, lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, sep } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { resolvedNow } from './now.js';

/**
 * What a path the user named for an output is (an archive, a `type=tar`/`type=local` dest,
 * `--iidfile`, `--metadata-file`, `analyze --html`, an `oci:` layout), and so how it is written.
 * The rules, the same for every output (README "Outputs"):
 * - nothing there, or a regular file: a new file is written beside it and renamed over it;
 * - a FIFO or a character device (a pipe, a tty, /dev/null): written through, once the content
 *   is complete; it stays what it is (a rename would put a regular file in its place: as root,
 *   `dest=/dev/full` once replaced the machine's /dev/full);
 * - a symlink: followed only to a FIFO or a character device; to anything else refused, since
 *   renaming over it would lose the link and writing through it would let whoever made it (in
 *   /tmp, say) choose which file is overwritten;
 * - /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N name a descriptor the caller's shell
 *   opened: written to that descriptor, whatever it leads to (a file, a pipe, a socket), at its
 *   own position, as the process's other output goes there;
 * - anything else (a directory where a file is wanted, a block device, a socket) is refused;
 * - nothing is created under /proc, /sys or /dev.
 * A directory output (`type=local`, `oci:`) must be missing or a directory, not a symlink.
 */
export type OutputShape = 'file' | 'directory';

export type OutputPlan =
  /** Nothing there yet: created (a file by rename, a directory by mkdir). */
  | 'create'
  /** A regular file, replaced by rename. */
  | 'replace'
  /** A FIFO or character device, written through. */
  | 'write-through'
  /** An existing directory, written into. */
  | 'into-directory';

/** Kernel filesystems: nothing created there is an output, and mkdir under /proc never returns. */
const KERNEL_FILESYSTEMS = ['/proc', '/sys', '/dev'];

const isStream = (info: Stats): boolean => info.isFIFO() || info.isCharacterDevice();

function describe(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFile()) return 'a file';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isCharacterDevice()) return 'a character device';
  return 'a special file';
}

/** The descriptor a path names (/dev/stdout, /dev/fd/3, /proc/self/fd/1, ...), else undefined. */
export function descriptorOf(path: string): number | undefined {
  if (path === '/dev/stdout') return 1;
  if (path === '/dev/stderr') return 2;
  const match = /^(?:\/dev\/fd|\/proc\/self\/fd)\/(\d+)$/.exec(path);
  return match === null ? undefined : Number(match[1]);
}

/**
 * How `path` is written, from what is there now; a refusal is a one-line error starting with
 * `label` (the output as the user wrote it). Looks, never opens: opening a FIFO would block.
 */
// The checks below use synchronous calls: a handful of metadata calls at every build's start,
// where each thread-pool round trip costs ~0.3-1 ms on a small VM (`build --watch` waits).
export function planOutput(path: string, shape: OutputShape, label = path): Promise<OutputPlan> {
  return resolvedNow(() => planOutputNow(path, shape, label));
}

/** Stats `path`; undefined when nothing is there (a missing path or a file as a parent). */
function statOrMissing(path: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

function planOutputNow(path: string, shape: OutputShape, label: string): OutputPlan {
  const fail = (reason: string): never => {
    throw new StratumError('IO', `${label}: ${reason}`);
  };
  const info = statOrMissing(path, false);
  if (info === undefined) return 'create';
  if (info.isSymbolicLink()) {
    let target: Stats | undefined;
    try {
      target = statSync(path);
    } catch {
      target = undefined;
    }
    if (shape === 'file' && target !== undefined && isStream(target)) return 'write-through';
    // The caller's own descriptor: whatever the shell (or a parent process) opened it on.
    if (shape === 'file' && target !== undefined && descriptorOf(path) !== undefined)
      if (target.isFile() || target.isSocket()) return 'write-through';
    return fail(
      target === undefined
        ? `${path} is a symlink to nothing; name the file to write, not a link`
        : `${path} is a symlink (to ${describe(target)}); an output is not written through a link, name ${shape === 'file' ? 'the file' : 'the directory'} it points to`,
    );
  }
  if (shape === 'directory') {
    if (info.isDirectory()) return 'into-directory';
    return fail(`${path} exists and is ${describe(info)}, not a directory`);
  }
  if (info.isFile()) return 'replace';
  if (isStream(info)) return 'write-through';
  return fail(`${path} exists and is ${describe(info)}, not a regular file, a FIFO or a character device`);
}

/**
 * Checks, before a build starts, that an output can be written: a build that succeeds after
 * minutes and then fails to write is wasted, and some paths (under /proc) make the system calls
 * misbehave rather than fail. Catches what planOutput refuses, kernel filesystems, a parent that
 * is a file (or missing, without `createParents`), and a read-only or unwritable directory.
 * Writes nothing; the writers plan again at write time for what changed in between.
 */
export function checkOutput(
  path: string,
  shape: OutputShape,
  options: { readonly label?: string; readonly createParents?: boolean } = {},
): Promise<OutputPlan> {
  return resolvedNow(() => checkOutputNow(path, shape, options));
}

function checkOutputNow(
  path: string,
  shape: OutputShape,
  options: { readonly label?: string; readonly createParents?: boolean },
): OutputPlan {
  const label = options.label ?? path;
  const fail = (reason: string): never => {
    throw new StratumError('IO', `${label}: ${reason}`);
  };
  const plan = planOutputNow(path, shape, label);
  if (plan === 'write-through') {
    try {
      accessSync(path, constants.W_OK);
    } catch {
      fail(`${path} is not writable (permission denied)`);
    }
    return plan;
  }
  // The directory the first mkdir, create or rename happens in: the nearest that exists.
  let existing = plan === 'into-directory' ? path : dirname(path);
  for (;;) {
    const info = statOrMissing(existing, true);
    if (info?.isDirectory() === true) break;
    if (info !== undefined) fail(`cannot create ${path}: ${existing} is a file, not a directory`);
    if (shape === 'file' && options.createParents !== true) fail(`directory ${dirname(path)} does not exist`);
    if (dirname(existing) === existing) break;
    existing = dirname(existing);
  }
  const real = realpathSync(existing);
  const kernel = KERNEL_FILESYSTEMS.find((root) => real === root || real.startsWith(`${root}${sep}`));
  if (kernel !== undefined) fail(`cannot write under ${kernel} (a kernel filesystem)`);
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EROFS') fail(`${existing} is on a read-only filesystem`);
    if (code === 'EACCES' || code === 'EPERM') fail(`${existing} is not writable (permission denied)`);
    throw error;
  }
  return plan;
}
