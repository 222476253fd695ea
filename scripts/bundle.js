// Bundles the compiled CLI (dist/cli/main.js and everything it imports, dependencies included)
// into one script, dist/bundle/stratum.cjs, which bin/load-cli.js runs with a V8 code cache.
// Run by `npm run build` after tsc.
//
// Why: loading ~240 ES modules one by one (resolve, read, compile, link each) cost a one-shot
// build 0.2-0.3 s before it did anything, as much as the steps of an edit rebuild; see
// bench/README.md ("Start-up"). dist/ itself stays as tsc writes it: it is the library
// (package.json `exports`) and what tests import.
//
// A classic script rather than an ES module: Node 20 can keep V8's compiled code of a
// vm.Script between runs (`cachedData`), not of an ES module. Hence also: import.meta.url is
// handed in by the loader, and the one import() left (undici, loaded only when a registry is
// used, and kept out of the bundle for its size) becomes a require(), since a vm.Script's
// import() needs an experimental flag.
import { build } from 'esbuild';
import { isAscii } from 'node:buffer';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist/bundle');

rmSync(outdir, { recursive: true, force: true });
/** What both bundles are: one CommonJS script for Node 20, ASCII, without whitespace. */
const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // ASCII only (non-ASCII characters escaped), so the loader reads it as one-byte text.
  charset: 'ascii',
  // Smaller text to read at every start (names are kept: error and class names stay as written).
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
};
await build({
  ...common,
  entryPoints: [join(root, 'dist/cli/main.js')],
  outfile: join(outdir, 'stratum.cjs'),
  external: ['undici'],
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__stratum_import_meta_url' },
  // Stack traces of internal errors stay readable with `node --enable-source-maps`; without
  // the flag Node never reads the map, so it costs nothing at start-up.
  sourcemap: 'linked',
});
// The user-namespace re-exec alone (~7 KB): bin/stratum.js runs it before the CLI's bundle, so a
// rootless or in-container build, whose first process only starts the namespaced one and waits,
// does not load and compile the whole CLI twice.
await build({
  ...common,
  entryPoints: [join(root, 'dist/executor/sandbox/rootless-reexec.js')],
  outfile: join(outdir, 'rootless.cjs'),
});
for (const name of ['stratum.cjs', 'rootless.cjs']) {
  if (!isAscii(readFileSync(join(outdir, name))))
    throw new Error(`scripts/bundle.js: dist/bundle/${name} is not ASCII`);
}
