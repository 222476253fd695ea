#!/usr/bin/env node
// Thin shim: the CLI lives in the compiled dist/ so `npx stratum` works after `npm ci`.
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
