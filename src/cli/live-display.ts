import type { BuildEvent, StepRef } from '../api/cli.js';
import { clip, displayLine, spread } from './terminal-text.js';

/**
 * The live build display on a terminal, in the manner of BuildKit's: below the lines already
 * final, a frame redrawn in place holds a header with the elapsed time and one line per running
 * step (side-by-side stages each get theirs) with the last lines of its output under it. A step
 * that finishes leaves the frame and is printed once above it, collapsed to one line with its
 * time (a failed step keeps its last output lines). Every frame line is clipped to the terminal
 * width, so the cursor arithmetic of a redraw stays right: a line that wrapped would leave a
 * copy of itself behind at each redraw.
 */
export interface LiveTerminal extends NodeJS.WritableStream {
  readonly columns?: number;
  readonly rows?: number;
}

/** Output lines shown under a running step, and kept for a failed one. */
const TAIL_RUNNING = 5;
const TAIL_FAILED = 10;
const REDRAW_MS = 150;

interface RunningStep {
  readonly step: StepRef;
  readonly started: number;
  /** Complete output lines (the last TAIL_FAILED), and the line still being written. */
  readonly tail: string[];
  partial: string;
}

export interface LiveDisplay {
  readonly onEvent: (event: BuildEvent) => void;
  /**
   * Ends the display: clears the frame and prints the total (call it before anything else is
   * written to the terminal). `succeeded` false when the build failed. Later calls do nothing.
   */
  readonly finish: (succeeded?: boolean) => void;
}

export function liveDisplay(out: LiveTerminal, explain: boolean, now = Date.now): LiveDisplay {
  const started = now();
  const running = new Map<string, RunningStep>();
  let frameLines = 0;
  let ran = 0;
  let cached = 0;
  let failed = 0;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;

  const columns = (): number => Math.max(20, (out.columns ?? 80) - 1);
  const seconds = (from: number): string => `${((now() - from) / 1000).toFixed(1)}s`;
  const keyOf = (step: StepRef): string => `${step.stage}\u0000${step.index}`;

  const frame = (): string[] => {
    const width = columns();
    const done = ran + cached;
    const header = clip(
      `[+] Building ${seconds(started)} (${done} step${done === 1 ? '' : 's'} done, ${running.size} running)`,
      width,
    );
    const steps = [...running.values()];
    // Never taller than the screen: a frame whose top scrolled away could not be redrawn.
    const maxLines = Math.max(2, (out.rows ?? 24) - 2);
    const stepLines = Math.min(steps.length, maxLines - 1);
    const tailRoom = Math.max(0, maxLines - 1 - stepLines);
    const tailEach = Math.min(TAIL_RUNNING, Math.floor(tailRoom / Math.max(1, stepLines)));
    const lines = [header];
    for (const entry of steps.slice(0, stepLines)) {
      lines.push(spread(` => ${label(entry.step)}`, seconds(entry.started), width));
      const tail = entry.partial === '' ? entry.tail : [...entry.tail, entry.partial];
      for (const line of tail.slice(-tailEach).filter(() => tailEach > 0))
        lines.push(clip(`    ${displayLine(line)}`, width));
    }
    if (stepLines < steps.length)
      lines.push(clip(`    … and ${steps.length - stepLines} more running`, width));
    return lines;
  };

  /** Replaces the frame: prints `final` lines above it (they scroll away), then the new frame. */
  const redraw = (final: readonly string[] = [], withFrame = true): void => {
    let text = frameLines > 0 ? `\r\x1b[${frameLines}A\x1b[J` : '';
    for (const line of final) text += `${line}\n`;
    const lines = withFrame ? frame() : [];
    for (const line of lines) text += `${line}\n`;
    frameLines = lines.length;
    out.write(text);
  };

  const finalLines = (event: BuildEvent): string[] => {
    const width = columns();
    switch (event.kind) {
      case 'stage-start':
        return [clip(`=> stage ${event.stage} FROM ${event.base}`, width)];
      case 'materialize':
        return [
          clip(
            `=> extracting ${event.layers} layer${event.layers === 1 ? '' : 's'} for stage ${event.stage}`,
            width,
          ),
        ];
      case 'step-end': {
        const prefix = event.outcome === 'cached' ? 'CACHED ' : event.outcome === 'failed' ? 'ERROR ' : '';
        const lines = [spread(`=> ${prefix}${label(event.step)}`, `${event.seconds.toFixed(1)}s`, width)];
        const entry = running.get(keyOf(event.step));
        if (event.outcome === 'failed' && entry !== undefined) {
          const tail = entry.partial === '' ? entry.tail : [...entry.tail, entry.partial];
          for (const line of tail) lines.push(`    ${displayLine(line)}`);
        }
        return lines;
      }
      case 'cache': {
        if (!explain) return [];
        const lines = [
          `   cache ${event.hit ? 'HIT' : 'MISS'} ${label(event.step)} ${event.key.slice(7, 19)}${event.source ? ` (from ${event.source})` : ''}`,
        ];
        for (const component of event.components) lines.push(`     ${component.name}: ${component.value}`);
        if (event.comparedWith !== undefined) lines.push(`     compared with: ${event.comparedWith}`);
        for (const reason of event.reasons) lines.push(`     changed: ${reason}`);
        return lines;
      }
      case 'warning':
        return [`warning: ${event.message}`];
      case 'material':
        return []; // for the provenance, not for people
      case 'snapshotter':
        return [clip(`=> snapshotter: ${event.name} (${event.reason})`, width)];
      case 'isolation':
        return [clip(`=> RUN isolation: ${event.mode} (${event.reason})`, width)];
      case 'image':
        return [`=> ${event.destination} ${event.digest}`];
      case 'step-start':
      case 'step-output':
        return []; // part of the frame, not final
    }
  };

  const onEvent = (event: BuildEvent): void => {
    if (finished) return;
    switch (event.kind) {
      case 'step-start':
        running.set(keyOf(event.step), { step: event.step, started: now(), tail: [], partial: '' });
        timer ??= setInterval(() => {
          redraw();
        }, REDRAW_MS).unref();
        redraw();
        return;
      case 'step-output': {
        const entry = running.get(keyOf(event.step));
        if (entry === undefined) return;
        const pieces = (entry.partial + event.text).split('\n');
        entry.partial = pieces.pop() ?? '';
        entry.tail.push(...pieces);
        entry.tail.splice(0, Math.max(0, entry.tail.length - TAIL_FAILED));
        return; // shown at the next tick: a chatty step must not cost a redraw per chunk
      }
      case 'step-end': {
        if (event.outcome === 'cached') cached++;
        else if (event.outcome === 'failed') failed++;
        else ran++;
        const lines = finalLines(event);
        running.delete(keyOf(event.step));
        redraw(lines);
        return;
      }
      case 'stage-start':
      case 'materialize':
      case 'cache':
      case 'warning':
      case 'snapshotter':
      case 'isolation':
      case 'image':
        redraw(finalLines(event));
        break;
      case 'material':
        break;
    }
  };

  const finish = (succeeded = true): void => {
    if (finished) return;
    finished = true;
    if (timer !== undefined) clearInterval(timer);
    const counts = [`${ran} ran`, `${cached} cached`, ...(failed > 0 ? [`${failed} failed`] : [])];
    const verb = succeeded && failed === 0 ? 'Built in' : 'Stopped after';
    redraw([clip(`[+] ${verb} ${seconds(started)} (${counts.join(', ')})`, columns())], false);
  };

  return { onEvent, finish };
}

function label(step: StepRef): string {
  return `[${step.stage} ${step.index}/${step.total}] ${step.instruction}`;
}
