#!/usr/bin/env node
'use strict';
// Thin shim: the CLI lives in the compiled dist/ so `npx stratum` works after `npm ci`.
// `npm run build` bundles it into one script, which load-cli.js runs with a V8 code cache:
// a fraction of the start-up of dist/'s ~240 modules. CommonJS (bin/package.json), as
// load-cli.js: Node starts an ES module entry ~8 ms later.
const { loadCli } = require('./load-cli.js');

void (async () => {
  const argv = process.argv.slice(2);
  const { main, saveCodeCache } = await loadCli(argv.find((arg) => !arg.startsWith('-')));
  process.exitCode = await main(argv);
  saveCodeCache();
})();
