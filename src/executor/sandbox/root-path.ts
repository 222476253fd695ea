import { lstat, readlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';

/**
 * Resolves a path inside a rootfs the way the kernel would after chroot(rootfs): symlinks are
 * followed relative to the rootfs (an absolute link restarts at the rootfs, `..` stops at it), so
 * a hostile image (`/etc -> /etc`, `/etc/passwd -> ../../../../etc/passwd`) can never make us
 * read or create a file on the host. Like securejoin in runc.
 */
export interface ResolvedPath {
  /** Host path of the deepest existing entry along the way (the rootfs itself at worst). */
  readonly existing: string;
  /** Components below `existing` that do not exist yet, in order (empty when the path exists). */
  readonly missing: readonly string[];
}

const maxSymlinks = 40; // the kernel's MAXSYMLINKS

export async function resolveInRoot(rootfs: string, path: string): Promise<ResolvedPath> {
  const pending = splitPath(path);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.' || name === '') continue;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const host = hostPath(rootfs, [...resolved, name]);
    let stats;
    try {
      stats = await lstat(host);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
      return { existing: hostPath(rootfs, resolved), missing: lexicalRest([name, ...pending]) };
    }
    if (stats.isSymbolicLink()) {
      links += 1;
      if (links > maxSymlinks) {
        throw new StratumError('UNSAFE_PATH', `${path}: too many levels of symbolic links in ${rootfs}`);
      }
      const target = await readlink(host);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...splitPath(target));
      continue;
    }
    if (pending.some((part) => part !== '' && part !== '.') && !stats.isDirectory()) {
      throw new StratumError(
        'UNSAFE_PATH',
        `${path}: ${posix.join('/', ...resolved, name)} is not a directory in ${rootfs}`,
      );
    }
    resolved.push(name);
  }
  return { existing: hostPath(rootfs, resolved), missing: [] };
}

/** Host path of an existing file inside the rootfs, or undefined when it does not exist. */
export async function existingPathInRoot(rootfs: string, path: string): Promise<string | undefined> {
  const resolved = await resolveInRoot(rootfs, path);
  return resolved.missing.length === 0 ? resolved.existing : undefined;
}

function splitPath(path: string): string[] {
  return path.split('/').filter((part) => part !== '');
}

/** Below a missing entry nothing can be a symlink, so `..` and `.` resolve lexically. */
function lexicalRest(parts: readonly string[]): string[] {
  const out: string[] = [];
  for (const part of parts) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}

function hostPath(rootfs: string, parts: readonly string[]): string {
  return parts.length === 0 ? rootfs : posix.join(rootfs, ...parts);
}
