import { constants } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import type { ImageReference } from '../oci/image.js';
import { formatImageReference } from '../oci/reference.js';
import { directoryState } from './layout-writer.js';

/**
 * Checks, before a build starts, that an output destination can be written: a build that
 * succeeds after minutes and then fails to write is wasted, and some paths (under /proc) make
 * the system calls misbehave rather than fail. Catches kernel filesystems, a parent that is a
 * file, a directory that is not a layout, and a read-only or unwritable directory. Writes
 * nothing; the writers still handle what changes between this check and the write.
 */
export async function checkDestination(reference: ImageReference): Promise<void> {
  switch (reference.transport) {
    case 'oci':
      return checkPath(reference, resolve(reference.path), 'directory');
    case 'oci-archive':
    case 'docker-archive':
      return checkPath(reference, resolve(reference.path), 'file');
    case 'store':
    case 'docker':
    case 'docker-daemon':
      return; // names, checked when parsed; the store's directory is stratum's own
  }
}

/** Kernel filesystems: nothing written there is an image, and mkdir under /proc never returns. */
const KERNEL_FILESYSTEMS = ['/proc', '/sys', '/dev'];

async function checkPath(
  reference: ImageReference,
  target: string,
  kind: 'directory' | 'file',
): Promise<void> {
  const name = formatImageReference(reference);
  const fail = (reason: string): never => {
    throw new StratumError('IO', `${name}: ${reason}`);
  };
  // The nearest part of the path that exists: that is where the first mkdir or create happens.
  let existing = target;
  for (;;) {
    const info = await stat(existing).catch((error: unknown) => {
      if (errnoCode(error) === 'ENOENT') return undefined;
      if (errnoCode(error) === 'ENOTDIR') return 'not-a-directory' as const;
      throw error;
    });
    if (info === 'not-a-directory') {
      existing = dirname(existing);
      continue; // a file further up: found on the way up as a non-directory
    }
    if (info !== undefined) {
      if (info.isDirectory()) break;
      if (existing === target && kind === 'file') {
        if (!info.isFile()) fail(`${target} exists and is not a regular file`);
        existing = dirname(existing);
        continue;
      }
      fail(
        existing === target
          ? `${target} exists and is a file, not a directory`
          : `cannot create ${target}: ${existing} is a file, not a directory`,
      );
    }
    if (dirname(existing) === existing) break;
    existing = dirname(existing);
  }
  const real = await realpath(existing);
  const kernel = KERNEL_FILESYSTEMS.find((root) => real === root || real.startsWith(`${root}${sep}`));
  if (kernel !== undefined) fail(`cannot write an image under ${kernel} (a kernel filesystem)`);
  if (existing === target && kind === 'directory' && (await directoryState(target)) === 'other') {
    fail(`${target} exists and is not an OCI image layout (no oci-layout file); refusing to write into it`);
  }
  try {
    await access(existing, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EROFS') fail(`${existing} is on a read-only filesystem`);
    if (code === 'EACCES' || code === 'EPERM') fail(`${existing} is not writable (permission denied)`);
    throw error;
  }
}
