/** Paths into ../shared/corpora and a walker for the Dockerfiles in them. */
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { corpora } from '../helpers/corpora.js';

export { corpora };
export const buildkitParser = join(corpora, 'buildkit', 'frontend', 'dockerfile', 'parser');
export const buildkitShell = join(corpora, 'buildkit', 'frontend', 'dockerfile', 'shell');

/** A Dockerfile by name: `Dockerfile`, `Dockerfile.x`, `Dockerfile_x`; not templates or ignore files. */
export function isDockerfileName(name: string): boolean {
  return /^Dockerfile([._-]|$)/.test(name) && !name.endsWith('.template') && !name.endsWith('.dockerignore');
}

export function* dockerfilesUnder(dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* dockerfilesUnder(path);
    else if (isDockerfileName(basename(path))) yield path;
  }
}
