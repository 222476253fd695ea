import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { cleanPath, resolveInRoot } from './paths.js';

/**
 * Reads a file a build context names for itself (its Dockerfile, its .dockerignore) as BuildKit
 * does: a symlink in the context is resolved inside the context, chroot-style (an absolute
 * target starts again at the context root, `..` stops there), never on the host. A context is
 * untrusted input (a cloned repository, a tar on standard input): followed on the host,
 * `Dockerfile -> /etc/shadow` would put a host file's first line into a parse error.
 */
export interface ContextFile {
  /** The file's bytes, or undefined when nothing is there once the links are resolved. */
  readonly content: Buffer | undefined;
  /** Where the path led inside the root (`/Dockerfile`, or a link's target such as `/etc/passwd`). */
  readonly inRoot: string;
}

/** Reads `path` (relative to `root`, or absolute inside it) with every symlink resolved inside `root`. */
export async function readContextFile(root: string, path: string, what = path): Promise<ContextFile> {
  const resolved = await resolveInRoot(root, path, { followFinal: true });
  if (resolved.missing) return { content: undefined, inRoot: resolved.inRoot };
  // Synchronous calls: a Dockerfile or an ignore file is small and read at every build's start,
  // where four thread-pool round trips cost 1-3 ms on a small VM (`build --watch` waits for them).
  let fd;
  try {
    // O_NOFOLLOW: the resolution left no link at the end; one appearing there now is not followed.
    // O_NONBLOCK: a FIFO in the context is refused below instead of waiting for a writer.
    fd = openSync(resolved.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP')
      return { content: undefined, inRoot: resolved.inRoot };
    throw new StratumError('IO', `${what}: cannot read (${code ?? String(error)})`, { cause: error });
  }
  try {
    if (!fstatSync(fd).isFile())
      throw new StratumError('IO', `${what}: ${describeTarget(resolved.inRoot, path)}is not a regular file`);
    return { content: readFileSync(fd), inRoot: resolved.inRoot };
  } finally {
    closeSync(fd);
  }
}

/**
 * The Dockerfile of a context directory: `file` is the `-f` path made absolute, or undefined
 * for CONTEXT/Dockerfile. A path inside the context is the context's, so its links resolve
 * inside the context; a path outside it is the user's own file, read as any program reads it
 * (BuildKit is stricter there: it resolves even that inside the file's directory).
 */
export async function readContextDockerfile(contextDir: string, file?: string): Promise<ContextFile> {
  const inside = relative(contextDir, file ?? join(contextDir, 'Dockerfile'));
  if (inside !== '..' && !inside.startsWith(`..${sep}`) && !isAbsolute(inside))
    return readContextFile(contextDir, inside, file ?? 'Dockerfile');
  const path = file!;
  try {
    return { content: readFileSync(path), inRoot: path };
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { content: undefined, inRoot: path };
    throw new StratumError('IO', `${path}: cannot read (${code ?? String(error)})`, { cause: error });
  }
}

/** `(leads to /etc/passwd inside the build context) ` when a link took the path elsewhere, else ''. */
export function describeTarget(inRoot: string, path: string): string {
  return inRoot === cleanPath(`/${path}`) ? '' : `(leads to ${inRoot} inside the build context) `;
}
