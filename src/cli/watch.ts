import { constants } from 'node:os';
import {
  displayName,
  formatWarningSummary,
  isStratumError,
  StratumError,
  watchBuilds,
  type BuildEvent,
  type BuildImageOptions,
  type WatchBuildOutcome,
} from '../api/cli.js';
import { errnoCode } from '../errors.js';
import { sourceExcerpt } from './error-text.js';
import { progressRenderer, type ProgressMode, type ProgressRenderer } from './progress.js';
import { abortOnSignals } from './signals.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface WatchDisplay {
  readonly progress: ProgressMode;
  readonly quiet: boolean;
  readonly explain: boolean;
}

/**
 * `stratum build --watch`: each build shows its progress and ends as a one-shot build does (the
 * digest on stdout, or its one-line error on stderr), and `[watch]` lines on stderr say what
 * started a build and that the loop waits. A failed build does not end the loop.
 *
 * Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops the build running, which removes its mounts and
 * temporary directories as an interrupted one-shot build does, and ends the process with
 * 128 + the signal's number (130 for Ctrl-C): what a shell reports for `tsc --watch` or
 * `cargo watch` ended by Ctrl-C, which die of the signal. Not 0: a script can tell a stopped
 * watch from a finished command.
 */
export async function watchBuild(options: BuildImageOptions, display: WatchDisplay): Promise<void> {
  // The Dockerfile is read again for every build; a context on standard input cannot be watched.
  const { dockerfile: _readOnce, contextArchive: _none, ...watched } = options;
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const remember = (signal: NodeJS.Signals): void => {
    received ??= signal;
  };
  for (const signal of SIGNALS) process.on(signal, remember);
  const stopListening = abortOnSignals(controller, 'watch');
  const say = watchLines(display.progress);
  let render: ProgressRenderer | undefined;
  // A build's events before it is announced (its stages, cached steps, a step that read the
  // context ahead of the quiet time), shown once it is; dropped with a build aborted before.
  let early: BuildEvent[] = [];
  let builds = 0;
  try {
    await watchBuilds({
      ...watched,
      ...quietTime(),
      signal: controller.signal,
      onEvent: (event) => {
        if (render === undefined) early.push(event);
        else render(event);
      },
      onBuildBegin: () => {
        early = [];
      },
      onBuildStart: (changed) => {
        builds++;
        say(changed.length === 0 ? 'building' : `${describeChanges(changed)}: rebuilding`, { changed });
        render = progressRenderer(display.progress, display.explain);
        for (const event of early.splice(0)) render(event);
      },
      onBuildEnd: (outcome) => {
        render?.finish(outcome.kind === 'built');
        render = undefined;
        report(outcome, display, builds === 1);
        say('waiting for changes (Ctrl-C stops)', {});
      },
    });
  } finally {
    render?.finish(false);
    stopListening();
    for (const signal of SIGNALS) process.off(signal, remember);
  }
  if (received !== undefined) {
    say(`stopped by ${received}`, { signal: received });
    process.exitCode = 128 + constants.signals[received];
  }
}

/** A build's end, as a one-shot build ends: the digest on stdout, or its error on stderr. */
function report(outcome: WatchBuildOutcome, display: WatchDisplay, first: boolean): void {
  if (outcome.kind === 'built') {
    const { result } = outcome;
    if (!display.quiet && display.progress !== 'quiet' && display.progress !== 'json')
      process.stderr.write(formatWarningSummary(result.checkWarnings));
    if (first && result.written.length === 0 && !display.quiet)
      process.stderr.write('warning: no -t or --output given: the images are built but not saved\n');
    process.stdout.write(`${result.digest}\n`);
    return;
  }
  const { error } = outcome;
  if (isStratumError(error)) {
    // A failed RUN's last output, when the progress did not show it.
    if (error.output !== undefined && (display.quiet || display.progress === 'quiet'))
      for (const line of error.output) process.stderr.write(`  | ${line}\n`);
    process.stderr.write(`stratum: ${displayName(error.message)}\n${sourceExcerpt(error.location)}`);
  } else if (errnoCode(error) !== undefined && error instanceof Error) {
    process.stderr.write(`stratum: ${error.message}\n`);
  } else {
    // A bug: said as the CLI says it, and the loop goes on (the next save may not hit it).
    process.stderr.write(
      `stratum: internal error (please report): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  }
}

/** `STRATUM_WATCH_QUIET_MS`: how long changes must pause before a build (default 15). */
function quietTime(): { quietMs?: number } {
  const text = process.env['STRATUM_WATCH_QUIET_MS'];
  if (text === undefined || text === '') return {};
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 60_000)
    throw new StratumError('USAGE', `STRATUM_WATCH_QUIET_MS=${text}: expected milliseconds, 0 to 60000`);
  return { quietMs: value };
}

/** `hello.c changed`, `3 files changed (a.c, b.c, Makefile)`. */
export function describeChanges(changed: readonly string[]): string {
  if (changed.length === 1) return `${displayName(changed[0]!)} changed`;
  const shown = changed.slice(0, 3).map(displayName).join(', ');
  return `${changed.length} paths changed (${shown}${changed.length > 3 ? ', …' : ''})`;
}

/** `[watch] …` lines on stderr; one JSON event a line with --progress json; none when quiet. */
function watchLines(progress: ProgressMode): (text: string, fields: Record<string, unknown>) => void {
  if (progress === 'quiet') return () => undefined;
  if (progress === 'json')
    return (text, fields) =>
      process.stderr.write(
        `${JSON.stringify({ time: new Date().toISOString(), kind: 'watch', message: text, ...fields })}\n`,
      );
  return (text) => process.stderr.write(`[watch] ${text}\n`);
}
