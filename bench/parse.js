// Parse benchmark: every Dockerfile under ../shared/corpora, parsed again and again.
// Prints files/second and the time for one pass over the whole corpus, for the full typed
// parse and for the AST stage alone. Run: npm run build && node bench/parse.js
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseDockerfile, parseDockerfileAst } from '../dist/parser/parse.js';

const corpora = resolve(import.meta.dirname, '..', '..', 'shared', 'corpora');

// The same selection as test/parser: Dockerfile, Dockerfile.x, Dockerfile_x; not Go templates.
const isDockerfileName = (name) =>
  /^Dockerfile([._-]|$)/.test(name) && !name.endsWith('.template') && !name.endsWith('.dockerignore');

function* walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else if (isDockerfileName(basename(path))) yield path;
  }
}

const files = [...walk(corpora)].map((path) => readFileSync(path));
const bytes = files.reduce((n, f) => n + f.length, 0);

function measure(name, parse) {
  for (let i = 0; i < 3; i++) for (const f of files) parse(f); // warm up the JIT
  const first = performance.now();
  for (const f of files) parse(f);
  const coldish = performance.now() - first;
  const start = performance.now();
  let passes = 0;
  while (performance.now() - start < 3000) {
    for (const f of files) parse(f);
    passes++;
  }
  const ms = (performance.now() - start) / passes;
  console.log(
    `${name.padEnd(28)} ${String(Math.round((files.length / ms) * 1000)).padStart(8)} files/s   ` +
      `${ms.toFixed(1).padStart(6)} ms/pass (first timed pass ${coldish.toFixed(1)} ms)   ${passes} passes`,
  );
}

console.log(`corpus: ${files.length} files, ${(bytes / 1024).toFixed(0)} KiB (${corpora})`);
measure('parseDockerfile (typed)', (f) => parseDockerfile(f));
measure('parseDockerfileAst (stage 1)', (f) => parseDockerfileAst(f));
