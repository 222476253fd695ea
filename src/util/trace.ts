import { performance } from 'node:perf_hooks';

/**
 * A developer's timeline of a build: with `STRATUM_TRACE=1`, each phase a build passes (options
 * read, stages, each step's cache lookup, rootfs, command, diff, layer; the outputs) prints
 * `[trace] <ms since the process started> +<ms since the last mark> <phase>` on stderr. It is
 * how bench/README.md's breakdowns are taken: `--progress plain` gives a step's total, this
 * says where inside it the time went. Off, a mark costs a function call.
 */
const enabled = (process.env['STRATUM_TRACE'] ?? '') !== '';
let last = performance.now();

export function trace(phase: string): void {
  if (!enabled) return;
  const now = performance.now();
  process.stderr.write(`[trace] ${now.toFixed(1)} +${(now - last).toFixed(1)} ${phase}\n`);
  last = now;
}
