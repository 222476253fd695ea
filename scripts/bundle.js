// Bundles the compiled CLI (dist/cli/main.js and everything it imports, dependencies included)
// into dist/bundle/, which bin/stratum.js loads. Run by `npm run build` after tsc.
//
// Why: loading ~240 ES modules one by one (resolve, read, compile, link each) cost a one-shot
// build 0.2-0.3 s before it did anything, as much as the steps of an edit rebuild. One file per
// command (esbuild's code splitting: the entry, a chunk per command, shared chunks) takes a
// no-op rebuild from ~0.64 s to ~0.33 s; see bench/README.md ("Start-up"). dist/ itself stays
// as tsc writes it: it is the library (package.json `exports`) and what tests import.
//
// Kept out of the bundle: undici (loaded only when a registry is used; large), and what is
// read through createRequire (spdx-license-ids' JSON), both resolved from node_modules at run
// time as before.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist/bundle');

// Chunk names carry a content hash: chunks of an earlier build would pile up.
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { stratum: join(root, 'dist/cli/main.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['undici'],
  // CommonJS dependencies (commander, tar-stream's helpers, packageurl-js) call require() for
  // Node's built-in modules, which an ES module bundle has no binding for.
  banner: {
    js: "import { createRequire as __stratumCreateRequire } from 'node:module'; const require = __stratumCreateRequire(import.meta.url);",
  },
  // Stack traces of internal errors stay readable with `node --enable-source-maps`; without
  // the flag Node never reads the map, so it costs nothing at start-up.
  sourcemap: 'linked',
  logLevel: 'warning',
});
