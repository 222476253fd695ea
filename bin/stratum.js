#!/usr/bin/env node
'use strict';
// Thin shim: the CLI lives in the compiled dist/ so `npx stratum` works after `npm ci`.
// `npm run build` bundles it into one script, which load-cli.js runs with a V8 code cache:
// a fraction of the start-up of dist/'s ~240 modules. CommonJS (bin/package.json), as
// load-cli.js: Node starts an ES module entry ~8 ms later.
const { Socket } = require('node:net');
const { loadCli, runInUserNamespaceFirst } = require('./load-cli.js');

void (async () => {
  const argv = process.argv.slice(2);
  const command = argv.find((arg) => !arg.startsWith('-'));
  const namespaced = await runInUserNamespaceFirst(command, argv);
  if (namespaced.code !== undefined) {
    process.exitCode = namespaced.code;
  } else {
    const { main, saveCodeCache } = await loadCli(command);
    process.exitCode = await main(argv, { userNamespaceDecided: namespaced.decided });
    saveCodeCache();
  }
  setImmediate(exitIfIdle);
})();

/**
 * Exits at once when nothing but stdout and stderr is left: the way out through an empty event
 * loop first takes the heap apart (~6 ms of a build's ~18 ms from the 'exit' event to the end,
 * measured). Anything else still alive (a child, a socket, a file operation, a timer) means work
 * in flight, which the usual way out waits for.
 */
function exitIfIdle() {
  const stdio = [process.stdout, process.stderr].filter((stream) => stream instanceof Socket).length;
  const active = process.getActiveResourcesInfo();
  if (active.length <= stdio && active.every((kind) => kind === 'PipeWrap' || kind === 'TTYWrap')) {
    process.exit();
  }
}
