import { humanSize, type BuildEvent, type StepRef } from '../api/cli.js';
import { liveDisplay } from './live-display.js';

/**
 * Renders build events. `plain`: one line when a step starts and one with its outcome and time,
 * every line of a step (its output too) prefixed with the step's number (see plainRenderer); `json`: one event per line for tools; `quiet`:
 * nothing but warnings; `auto`: plain when the output is not a terminal, else the live display of
 * live-display.ts.
 */
export type ProgressMode = 'auto' | 'plain' | 'json' | 'quiet';

/**
 * Renders each event; `finish` ends a live display (a no-op for the line-based modes).
 * `showsOutput`: whether the steps' output reaches the user through it (all but `quiet`), so a
 * failed RUN's last output is printed by the CLI only when it did not.
 */
export type ProgressRenderer = ((event: BuildEvent) => void) & {
  readonly finish: (succeeded?: boolean) => void;
  readonly showsOutput: boolean;
};

export function progressRenderer(
  mode: ProgressMode,
  explain = false,
  out: NodeJS.WritableStream = process.stderr,
): ProgressRenderer {
  const resolved = mode === 'auto' ? ((out as { isTTY?: boolean }).isTTY === true ? 'tty' : 'plain') : mode;
  const lines = (render: (event: BuildEvent) => void, showsOutput = true): ProgressRenderer =>
    Object.assign(render, { finish: () => undefined, showsOutput });
  switch (resolved) {
    case 'json':
      // Each event carries the wall-clock time it was reported at, as BuildKit's JSON does.
      return lines((event) => out.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`));
    case 'quiet':
      return lines((event) => {
        if (event.kind === 'warning') out.write(`warning: ${event.message}\n`);
      }, false);
    case 'plain':
      return lines(plainRenderer(out, explain));
    case 'tty': {
      const display = liveDisplay(out, explain);
      return Object.assign(display.onEvent, { finish: display.finish, showsOutput: true });
    }
  }
}

/**
 * The plain format, for logs: every line of a step starts with its number, `#N`, as in
 * BuildKit's plain output, so the lines of stages that run side by side (or of several
 * platforms) interleave and still say whose they are. Output lines also carry the seconds since
 * their step started and a `|`, so they never read as the status lines around them:
 *
 *     #3 [build 2/4] RUN make
 *     #4 [test 1/2] RUN ./check
 *     #3 0.412 | cc -o app main.c
 *     #4 0.530 | ok
 *     #3 DONE 0.61s layer 3b1c2a9d8e7f 1.2 kB
 */
function plainRenderer(out: NodeJS.WritableStream, explain: boolean): (event: BuildEvent) => void {
  const keyOf = (step: StepRef): string => `${step.stage}\u0000${step.index}`;
  /** Each step's number and start, from its step-start (numbered in the order steps start). */
  const numbers = new Map<string, { readonly id: string; readonly started: number }>();
  let count = 0;
  const idOf = (step: StepRef): string => {
    let entry = numbers.get(keyOf(step));
    if (entry === undefined) {
      entry = { id: `#${++count}`, started: Date.now() };
      numbers.set(keyOf(step), entry);
    }
    return entry.id;
  };
  const elapsed = (step: StepRef): string =>
    ((Date.now() - (numbers.get(keyOf(step))?.started ?? Date.now())) / 1000).toFixed(3);
  // A line the command has not ended yet, per step: written whole, once, when it ends (or with
  // the step), never cut at a chunk boundary nor glued to what comes next.
  const partial = new Map<string, string>();
  const outputLine = (step: StepRef, line: string): void => {
    out.write(`${idOf(step)} ${elapsed(step)} | ${line}\n`);
  };
  const flush = (step: StepRef): void => {
    const rest = partial.get(keyOf(step));
    if (rest !== undefined) outputLine(step, rest);
    partial.delete(keyOf(step));
  };
  return (event) => {
    switch (event.kind) {
      case 'stage-start':
        out.write(`#stage ${event.stage} FROM ${event.base}\n`);
        break;
      case 'step-start':
        out.write(
          `${idOf(event.step)} [${event.step.stage} ${event.step.index}/${event.step.total}] ${event.step.instruction}\n`,
        );
        break;
      case 'step-output': {
        const lines = ((partial.get(keyOf(event.step)) ?? '') + event.text).split('\n');
        const rest = lines.pop() ?? '';
        if (rest === '') partial.delete(keyOf(event.step));
        else partial.set(keyOf(event.step), rest);
        for (const line of lines) outputLine(event.step, line);
        break;
      }
      case 'step-end': {
        flush(event.step);
        const layer = event.layer
          ? ` layer ${event.layer.digest.slice(7, 19)} ${formatBytes(event.layer.size)}`
          : '';
        out.write(
          `${idOf(event.step)} ${event.outcome.toUpperCase()} ${event.seconds.toFixed(2)}s${layer}\n`,
        );
        break;
      }
      case 'cache': {
        if (!explain) break;
        const id = idOf(event.step);
        out.write(
          `${id} cache ${event.hit ? 'HIT' : 'MISS'} ${event.key.slice(7, 19)}${event.source ? ` (from ${event.source})` : ''}\n`,
        );
        for (const component of event.components)
          out.write(`${id}   ${component.name}: ${component.value}\n`);
        if (event.comparedWith !== undefined) out.write(`${id}   compared with: ${event.comparedWith}\n`);
        for (const reason of event.reasons) out.write(`${id}   changed: ${reason}\n`);
        break;
      }
      case 'materialize':
        out.write(`#stage ${event.stage} extracting ${event.layers} layer${event.layers === 1 ? '' : 's'}\n`);
        break;
      case 'snapshotter':
        out.write(`snapshotter: ${event.name} (${event.reason})\n`);
        break;
      case 'isolation':
        out.write(`RUN isolation: ${event.mode} (${event.reason})\n`);
        break;
      case 'warning':
        out.write(`warning: ${event.message}\n`);
        break;
      case 'image':
        out.write(`=> ${event.destination} ${event.digest}\n`);
        break;
      case 'material':
        break; // for the provenance, not for people
    }
  };
}

/** Sizes as every command prints them (decimal units, as Docker does). */
export const formatBytes = humanSize;
