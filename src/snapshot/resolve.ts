import { lstatSync } from 'node:fs';
import { StratumError, errnoCode } from '../errors.js';
import { fsPath, readLinkSync } from '../util/file-names.js';
import { resolvedNow } from '../util/now.js';

/**
 * The one rootfs path resolver: resolves a path inside a root the way the kernel does after
 * chroot(root), over any tree (a directory on disk, or analyze's in-memory model).
 * - an absolute symlink target restarts at the root, never at the host's `/`;
 * - a `..` at the root is clamped there (`atRoot: 'clamp'`, the kernel's and Docker's answer
 *   for a running container) or refused with UNSAFE_PATH (`atRoot: 'refuse'`, what layer
 *   application uses: a layer entry reached through a link that climbs out is hostile);
 * - the last component is followed only with `followLast`;
 * - more than MAX_SYMLINKS links is ELOOP (UNSAFE_PATH), as the kernel's MAXSYMLINKS;
 * - below a missing component nothing can be a link, so the rest resolves lexically.
 * The walk is a generator that asks the caller about one path at a time, so one algorithm
 * drives both the synchronous model lookup and the asynchronous disk lookup.
 */

export const MAX_SYMLINKS = 40;

/** What is at a path inside the root (the parts are already resolved: no links in them). */
export type Lookup =
  | { readonly kind: 'missing' }
  | { readonly kind: 'dir' }
  | { readonly kind: 'symlink'; readonly target: string }
  | { readonly kind: 'other' };

export interface ResolveOptions {
  /** Follow the last component when it is a symlink. */
  readonly followLast: boolean;
  /** What a `..` at the root does: stay at the root (chroot) or refuse the path. */
  readonly atRoot: 'clamp' | 'refuse';
  /** The path must name a directory: a non-directory at its end is reported as `notDirectory`. */
  readonly directory?: boolean;
  /** Names the path in errors, e.g. `layer sha256:…: entry "a/b"`. */
  readonly what?: string;
}

export interface Resolution {
  /** Components of the resolved path inside the root (no links left among the existing ones). */
  readonly parts: readonly string[];
  /** How many leading parts exist; the others were missing and appended lexically. */
  readonly existing: number;
  /** In-root path of a non-directory the path had to go through (`file/x` gives `file`). */
  readonly notDirectory?: string;
  /** A `..` tried to climb above the root and was clamped (only with `atRoot: 'clamp'`). */
  readonly climbedOut: boolean;
  /** An absolute symlink target was followed (relative to the root). */
  readonly followedAbsolute: boolean;
}

function split(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.');
}

/** The resolver itself: yields the parts to look up, receives what is there. */
function* walk(path: string, options: ResolveOptions): Generator<readonly string[], Resolution, Lookup> {
  const what = options.what ?? path;
  const pending = split(path);
  const parts: string[] = [];
  let existing = 0;
  let links = 0;
  let climbedOut = false;
  let followedAbsolute = false;
  let missing = false;
  let notDirectory: string | undefined;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '..') {
      if (parts.length > 0) {
        parts.pop();
        existing = Math.min(existing, parts.length);
      } else if (options.atRoot === 'refuse') {
        throw new StratumError('UNSAFE_PATH', `${what}: a symlink on the way climbs out of the root`);
      } else climbedOut = true;
      continue;
    }
    if (missing || (pending.length === 0 && !options.followLast)) {
      parts.push(name);
      continue;
    }
    const found = yield [...parts, name];
    if (found.kind === 'missing') {
      missing = true;
      parts.push(name);
      continue;
    }
    if (found.kind === 'symlink') {
      if (++links > MAX_SYMLINKS) {
        throw new StratumError('UNSAFE_PATH', `${what}: too many levels of symbolic links (ELOOP)`);
      }
      if (found.target.startsWith('/')) {
        followedAbsolute = true;
        parts.length = 0;
        existing = 0;
      }
      pending.unshift(...split(found.target));
      continue;
    }
    parts.push(name);
    existing = parts.length;
    // A file cannot be gone through (ENOTDIR): the rest is kept lexically, like a missing part.
    if (found.kind === 'other' && (pending.length > 0 || options.directory === true)) {
      notDirectory = parts.join('/');
      missing = true;
    }
  }
  return {
    parts,
    existing: missing ? existing : parts.length,
    ...(notDirectory !== undefined ? { notDirectory } : {}),
    climbedOut,
    followedAbsolute,
  };
}

/** Resolves over a synchronous tree, such as analyze's filesystem model. */
export function resolveWith(
  path: string,
  lookup: (parts: readonly string[]) => Lookup,
  options: ResolveOptions,
): Resolution {
  const steps = walk(path, options);
  let step = steps.next();
  while (step.done !== true) step = steps.next(lookup(step.value));
  return step.value;
}

/** Resolves over an asynchronous tree; `lookup` may create what is missing (extraction does). */
export async function resolveWithAsync(
  path: string,
  lookup: (parts: readonly string[]) => Promise<Lookup>,
  options: ResolveOptions,
): Promise<Resolution> {
  const steps = walk(path, options);
  let step = steps.next();
  while (step.done !== true) step = steps.next(await lookup(step.value));
  return step.value;
}

/** Host path of in-root parts. */
export function hostPathOf(root: string, parts: readonly string[]): string {
  if (parts.length === 0) return root;
  return root === '/' ? `/${parts.join('/')}` : `${root}/${parts.join('/')}`;
}

/**
 * What is at `parts` under a directory on disk (lstat, and readlink for a link), with synchronous
 * calls: a lookup is a few microseconds in the kernel, while each asynchronous call cost a
 * thread-pool round trip (0.2-0.5 ms here), and a RUN step resolved its user and working
 * directory through ~10 of them on its path (~8 ms a step).
 */
export function lookupOnDisk(root: string, parts: readonly string[]): Lookup {
  const host = hostPathOf(root, parts);
  let info;
  try {
    info = lstatSync(fsPath(host));
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
    throw error;
  }
  if (info.isDirectory()) return { kind: 'dir' };
  if (info.isSymbolicLink()) return { kind: 'symlink', target: readLinkSync(host) };
  return { kind: 'other' };
}

/** Resolves `path` inside the directory `root` on disk. */
export function resolveOnDiskSync(root: string, path: string, options: ResolveOptions): Resolution {
  const trimmed = root.replace(/\/+$/, '') || '/';
  return resolveWith(path, (parts) => lookupOnDisk(trimmed, parts), options);
}

/** The same, for callers that await it (an error is a rejection). */
export function resolveOnDisk(root: string, path: string, options: ResolveOptions): Promise<Resolution> {
  return resolvedNow(() => resolveOnDiskSync(root, path, options));
}
