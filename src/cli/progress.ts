import { humanSize, type BuildEvent, type StepRef } from '../index.js';

/**
 * Renders build events. `plain`: one line when a step starts and one with its outcome and time
 * (the step's output indented between them); `json`: one event per line for tools; `quiet`:
 * nothing but warnings; `auto`: plain when the output is not a terminal, else a compact live view.
 */
export type ProgressMode = 'auto' | 'plain' | 'json' | 'quiet';

export function progressRenderer(
  mode: ProgressMode,
  explain = false,
  out: NodeJS.WritableStream = process.stderr,
): (event: BuildEvent) => void {
  const resolved = mode === 'auto' ? ((out as { isTTY?: boolean }).isTTY === true ? 'tty' : 'plain') : mode;
  switch (resolved) {
    case 'json':
      return (event) => out.write(`${JSON.stringify(event)}\n`);
    case 'quiet':
      return (event) => {
        if (event.kind === 'warning') out.write(`warning: ${event.message}\n`);
      };
    case 'plain':
      return plainRenderer(out, explain);
    case 'tty':
      return ttyRenderer(out, explain);
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

/** A one-line live status on a terminal; finished steps scroll above it. */
function ttyRenderer(out: NodeJS.WritableStream, explain: boolean): (event: BuildEvent) => void {
  const plain = plainRenderer(out, explain);
  let current: StepRef | undefined;
  let started = 0;
  let timer: NodeJS.Timeout | undefined;
  const status = (): void => {
    if (current === undefined) return;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    out.write(`\r\x1b[2K${stepLabel(current).slice(0, 100)} ${seconds}s`);
  };
  return (event) => {
    if (event.kind === 'step-start') {
      current = event.step;
      started = Date.now();
      status();
      timer ??= setInterval(status, 100).unref();
      return;
    }
    if (event.kind === 'step-output') return;
    out.write('\r\x1b[2K');
    if (event.kind === 'step-end') {
      plain({ kind: 'step-start', step: event.step });
      current = undefined;
    }
    plain(event);
    if (event.kind === 'image' && timer !== undefined) clearInterval(timer);
  };
}

/** Sizes as every command prints them (decimal units, as Docker does). */
export const formatBytes = humanSize;
