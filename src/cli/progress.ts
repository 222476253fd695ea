import { humanSize, type BuildEvent, type StepRef } from '../index.js';
import { liveDisplay } from './live-display.js';

/**
 * Renders build events. `plain`: one line when a step starts and one with its outcome and time
 * (the step's output indented between them); `json`: one event per line for tools; `quiet`:
 * nothing but warnings; `auto`: plain when the output is not a terminal, else the live display of
 * live-display.ts.
 */
export type ProgressMode = 'auto' | 'plain' | 'json' | 'quiet';

/** Renders each event; `finish` ends a live display (a no-op for the line-based modes). */
export type ProgressRenderer = ((event: BuildEvent) => void) & {
  readonly finish: (succeeded?: boolean) => void;
};

export function progressRenderer(
  mode: ProgressMode,
  explain = false,
  out: NodeJS.WritableStream = process.stderr,
): ProgressRenderer {
  const resolved = mode === 'auto' ? ((out as { isTTY?: boolean }).isTTY === true ? 'tty' : 'plain') : mode;
  const lines = (render: (event: BuildEvent) => void): ProgressRenderer =>
    Object.assign(render, { finish: () => undefined });
  switch (resolved) {
    case 'json':
      // Each event carries the wall-clock time it was reported at, as BuildKit's JSON does.
      return lines((event) => out.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`));
    case 'quiet':
      return lines((event) => {
        if (event.kind === 'warning') out.write(`warning: ${event.message}\n`);
      });
    case 'plain':
      return lines(plainRenderer(out, explain));
    case 'tty': {
      const display = liveDisplay(out, explain);
      return Object.assign(display.onEvent, { finish: display.finish });
    }
  }
}

function stepLabel(step: StepRef): string {
  return `[${step.stage} ${step.index}/${step.total}] ${step.instruction}`;
}

function plainRenderer(out: NodeJS.WritableStream, explain: boolean): (event: BuildEvent) => void {
  return (event) => {
    switch (event.kind) {
      case 'stage-start':
        out.write(`#stage ${event.stage} FROM ${event.base}\n`);
        break;
      case 'step-start':
        out.write(`${stepLabel(event.step)}\n`);
        break;
      case 'step-output':
        for (const line of event.text.replace(/\n$/, '').split('\n')) out.write(`  | ${line}\n`);
        break;
      case 'step-end': {
        const layer = event.layer
          ? ` layer ${event.layer.digest.slice(7, 19)} ${formatBytes(event.layer.size)}`
          : '';
        out.write(`  => ${event.outcome.toUpperCase()} ${event.seconds.toFixed(2)}s${layer}\n`);
        break;
      }
      case 'cache':
        if (!explain) break;
        out.write(
          `  cache ${event.hit ? 'HIT' : 'MISS'} ${event.key.slice(7, 19)}${event.source ? ` (from ${event.source})` : ''}\n`,
        );
        for (const component of event.components) out.write(`    ${component.name}: ${component.value}\n`);
        for (const reason of event.reasons) out.write(`    changed: ${reason}\n`);
        break;
      case 'materialize':
        out.write(
          `  (extracting ${event.layers} layer${event.layers === 1 ? '' : 's'} for stage ${event.stage})\n`,
        );
        break;
      case 'snapshotter':
        out.write(`snapshotter: ${event.name} (${event.reason})\n`);
        break;
      case 'warning':
        out.write(`warning: ${event.message}\n`);
        break;
      case 'image':
        out.write(`=> ${event.destination} ${event.digest}\n`);
        break;
    }
  };
}

/** Sizes as every command prints them (decimal units, as Docker does). */
export const formatBytes = humanSize;
