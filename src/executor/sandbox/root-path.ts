import { posix } from 'node:path';
import { StratumError } from '../../errors.js';
import { hostPathOf, resolveOnDisk } from '../../snapshot/resolve.js';

/**
 * Resolves a path inside a rootfs the way the kernel would after chroot(rootfs), with the one
 * resolver of src/snapshot/resolve.ts: an absolute link restarts at the rootfs and `..` stops
 * at it (clamped: this is the rootfs a container runs in, and the kernel clamps there too), so
 * a hostile image (`/etc -> /etc`, `/etc/passwd -> ../../../../etc/passwd`) can never make us
 * read or create a file on the host.
 */
export interface ResolvedPath {
  /** Host path of the deepest existing entry along the way (the rootfs itself at worst). */
  readonly existing: string;
  /** Components below `existing` that do not exist yet, in order (empty when the path exists). */
  readonly missing: readonly string[];
}

export async function resolveInRoot(rootfs: string, path: string): Promise<ResolvedPath> {
  const root = rootfs.replace(/\/+$/, '') || '/';
  const resolved = await resolveOnDisk(root, path, {
    followLast: true,
    atRoot: 'clamp',
    what: `${path} in ${rootfs}`,
  });
  if (resolved.notDirectory !== undefined) {
    throw new StratumError(
      'UNSAFE_PATH',
      `${path}: ${posix.join('/', resolved.notDirectory)} is not a directory in ${rootfs}`,
    );
  }
  return {
    existing: hostPathOf(root, resolved.parts.slice(0, resolved.existing)),
    missing: resolved.parts.slice(resolved.existing),
  };
}

/** Host path of an existing file inside the rootfs, or undefined when it does not exist. */
export async function existingPathInRoot(rootfs: string, path: string): Promise<string | undefined> {
  const resolved = await resolveInRoot(rootfs, path);
  return resolved.missing.length === 0 ? resolved.existing : undefined;
}
