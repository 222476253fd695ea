import { constants } from 'node:os';
import { StratumError } from '../errors.js';

/**
 * SIGINT, SIGTERM and SIGHUP end a long command (build, push, pull) within seconds. The first
 * signal aborts `controller`, so every step stops, kills its RUN processes and removes its
 * temporary state on the way out. If something does not stop in `graceMs` (a system call
 * stuck in the kernel), or a second signal comes, the process exits anyway; the temporary
 * state is then removed by the exit hook of the workspace, or by the next build.
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export function abortOnSignals(controller: AbortController, what: string, graceMs = 5000): () => void {
  let received: NodeJS.Signals | undefined;
  const exitCode = (signal: NodeJS.Signals): number => 128 + constants.signals[signal];
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received !== undefined) {
      process.stderr.write(`stratum: ${what} stopped by a second ${signal}\n`);
      process.exit(exitCode(signal));
    }
    received = signal;
    controller.abort(new StratumError('ABORTED', `${what} interrupted by ${signal}`));
    const watchdog = setTimeout(() => {
      process.stderr.write(`stratum: ${what} did not stop within ${graceMs / 1000}s of ${signal}; exiting\n`);
      process.exit(exitCode(signal));
    }, graceMs);
    watchdog.unref();
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of SIGNALS) process.off(signal, onSignal);
  };
}
