import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, StratumError } from '../../errors.js';

/**
 * Go's `path.Clean` on slash paths: collapses `//`, drops `.`, resolves `..` lexically (kept at
 * the front of a relative path, dropped at the root), and returns `.` for an empty result.
 * .dockerignore patterns and COPY paths are cleaned this way before anything else.
 */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const body = out.join('/');
  if (rooted) return `/${body}`;
  return body === '' ? '.' : body;
}

/** Splits a slash path into its non-empty components. */
export function components(p: string): string[] {
  return p.split('/').filter((part) => part !== '' && part !== '.');
}

export interface RootResolution {
  /** Host path of the result; always `root` or below it. */
  readonly hostPath: string;
  /** The path inside the root, cleaned and with every followed symlink resolved (`/a/b`). */
  readonly inRoot: string;
  /** A `..` tried to climb above the root (and was clamped there). */
  readonly climbedOut: boolean;
  /** An absolute symlink target was followed (it was taken relative to the root). */
  readonly followedAbsolute: boolean;
  /** The path (or a prefix of it) does not exist; the rest was appended as written. */
  readonly missing: boolean;
}

const MAX_LINKS = 255;

/**
 * Resolves `p` inside `root` the way a process chrooted at `root` would see it: an absolute
 * symlink target starts again at `root`, and `..` never climbs above `root`. Every component
 * except the last is followed; the last is followed only with `followFinal`. Nothing here can
 * name a host path outside `root`, which is what keeps COPY and ADD from writing through a
 * rootfs symlink such as `/app -> /etc` or `/app -> ../../..`.
 */
export async function resolveInRoot(
  root: string,
  p: string,
  options: { readonly followFinal: boolean },
): Promise<RootResolution> {
  const resolved: string[] = [];
  // `p` is cleaned lexically first, as Go's `filepath.Join("/", p)` does for COPY paths; the
  // only `..` left to handle come from symlink targets.
  const queue = components(cleanPath(`/${p}`));
  let links = 0;
  let climbedOut = false;
  let followedAbsolute = false;
  let missing = false;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === '..') {
      if (resolved.length === 0) climbedOut = true;
      else resolved.pop();
      continue;
    }
    if (missing || (queue.length === 0 && !options.followFinal)) {
      resolved.push(part);
      continue;
    }
    const candidate = join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (error) {
      const code = errnoCode(error);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      missing = true;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new StratumError('IO', `${p}: too many levels of symbolic links`);
    }
    const target = await readlink(candidate);
    if (target.startsWith('/')) {
      followedAbsolute = true;
      resolved.length = 0;
    }
    queue.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
  }
  return {
    hostPath: join(root, ...resolved),
    inRoot: `/${resolved.join('/')}`,
    climbedOut,
    followedAbsolute,
    missing,
  };
}
