import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inCI } from './system.js';

/**
 * The shared corpora (upstream test files: BuildKit's parser cases, image-spec schemas, real-world
 * Dockerfiles, go-containerregistry layouts) live in ../shared/corpora beside the repository, not
 * in it. A fresh clone has no ../shared: tests that read it skip with a message there, and fail
 * under CI=true (CI provides the corpora), exactly as requireTool does for system tools.
 */
export const corpora = resolve(import.meta.dirname, '..', '..', '..', 'shared', 'corpora');

/** The path of `parts` inside the corpora, whether or not it exists. */
export function corpusPath(...parts: string[]): string {
  return join(corpora, ...parts);
}

/**
 * Returns true when the corpus directory (or file) `parts` is present. Absent: throws under CI,
 * otherwise warns once and returns false so the caller can `describe.skipIf(!requireCorpus(...))`
 * and leave the corpus unread.
 */
export function requireCorpus(...parts: string[]): boolean {
  const path = corpusPath(...parts);
  if (existsSync(path)) return true;
  const message = `missing the shared corpus ${path} (the corpora sit in ../shared/corpora beside the repository; a plain clone has none)`;
  if (inCI) throw new Error(`CI is set and ${message}`);
  console.warn(`skipping: ${message}`);
  return false;
}
