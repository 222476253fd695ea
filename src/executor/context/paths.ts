import { join } from 'node:path';
import { resolveOnDisk } from '../../snapshot/resolve.js';

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

/**
 * Resolves `p` inside `root` the way a process chrooted at `root` would see it, with the one
 * resolver of src/snapshot/resolve.ts: an absolute symlink target starts again at `root`, and
 * `..` is clamped at `root` (as BuildKit's securejoin does for COPY; the caller decides what a
 * climb means through `climbedOut`). Every component except the last is followed; the last only
 * with `followFinal`. Nothing here can name a host path outside `root`, which is what keeps COPY
 * and ADD from writing through a rootfs symlink such as `/app -> /etc` or `/app -> ../../..`.
 */
export async function resolveInRoot(
  root: string,
  p: string,
  options: { readonly followFinal: boolean },
): Promise<RootResolution> {
  // `p` is cleaned lexically first, as Go's `filepath.Join("/", p)` does for COPY paths; the
  // only `..` left to handle come from symlink targets.
  const resolved = await resolveOnDisk(root, cleanPath(`/${p}`), {
    followLast: options.followFinal,
    atRoot: 'clamp',
    what: p,
  });
  return {
    hostPath: join(root, ...resolved.parts),
    inRoot: `/${resolved.parts.join('/')}`,
    climbedOut: resolved.climbedOut,
    followedAbsolute: resolved.followedAbsolute,
    missing: resolved.existing < resolved.parts.length,
  };
}
