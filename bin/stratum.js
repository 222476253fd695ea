#!/usr/bin/env node
// Thin shim: the CLI lives in the compiled dist/ so `npx stratum` works after `npm ci`.
// `npm run build` bundles it into dist/bundle/ (scripts/bundle.js): one file per command loads
// in a fraction of the time of dist/'s ~240 modules. A dist/ that tsc alone wrote has no
// bundle, and runs as it is.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/bundle/stratum.js', import.meta.url);
const { main } = existsSync(bundle) ? await import(bundle.href) : await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));
