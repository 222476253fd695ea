/**
 * The watch loop's schedule: a first build at once, then one build per burst of changes.
 *
 * - Debounced: a build's context is read once no change has come for `quietMs` (an editor's
 *   save is a temporary file, a write and a rename within milliseconds: one build), or
 *   `maxWaitMs` after the first change of a burst that never goes quiet (a log file written
 *   without pause).
 * - The quiet time is not idle: the build starts at the burst's first change and does what
 *   does not read the context (its Dockerfile, plan, base image, cached steps) while the burst
 *   goes on. It reads the context ahead of the quiet too (`readContext` resolves at once): a
 *   change that comes once it has started reading, before the burst is over, aborts it and
 *   starts it again, and that build waits for the quiet (`readContext` resolves when the burst
 *   is over). `settled` says when the burst is over, and with what changed; the build writes
 *   nothing before. A change that `restartOn` names (the Dockerfile, an ignore file: read
 *   already) aborts the build at any time in the burst.
 * - Never two builds at once: changes that come once a build has its context are collected,
 *   and one more build follows it (not one per change).
 * - `signal` ends the loop: the build running gets it (it stops and cleans up), and the loop
 *   resolves once that build has unwound.
 */
export interface RebuildLoopOptions {
  /**
   * Runs one build. It calls `readContext` before its first read of the context and waits for
   * it; it writes its outputs once `settled` resolves (with what changed; empty for the first
   * build); when `signal` aborts it stops. Errors are the caller's to report.
   */
  readonly build: (
    settled: Promise<readonly string[]>,
    signal: AbortSignal,
    readContext: () => Promise<void>,
  ) => Promise<void>;
  /** Subscribes to changes (paths as they should be shown); returns the unsubscribe. */
  readonly subscribe: (onChange: (path: string) => void) => () => void;
  /** Changes a build waiting for quiet has read already: they start it again. */
  readonly restartOn?: (path: string) => boolean;
  readonly signal: AbortSignal;
  /** How long the context must stay quiet before a build reads it (default 15 ms). */
  readonly quietMs?: number;
  /** The longest a burst of changes delays its build (default 1 s). */
  readonly maxWaitMs?: number;
}

export const DEFAULT_QUIET_MS = 15;
const DEFAULT_MAX_WAIT_MS = 1000;

/** A build started by a burst that has not gone quiet yet. */
interface Settling {
  readonly resolve: (changed: readonly string[]) => void;
  readonly controller: AbortController;
  /** Whether it may read the context before the burst is over (not after a restart in it). */
  readonly readAhead: boolean;
  /** Whether it has started reading the context: a change now starts it again. */
  reading: boolean;
}

export async function runRebuildLoop(options: RebuildLoopOptions): Promise<void> {
  const { signal } = options;
  const quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  // Changes no build has taken yet.
  let pending = new Set<string>();
  let firstChangeAt = 0;
  let lastChangeAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let settling: Settling | undefined;
  // A build aborted within its burst: the next one waits for the quiet before it reads.
  let restarted = false;
  // Wakes the idle loop at a burst's first change (or when the loop is to end).
  let wake: (() => void) | undefined;

  const clearTimer = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  /** The burst is over: the settling build takes its changes. */
  const settle = (): void => {
    clearTimer();
    const waiting = settling;
    if (waiting === undefined) return;
    settling = undefined;
    const changed = [...pending];
    pending = new Set();
    waiting.resolve(changed);
  };
  const arm = (): void => {
    clearTimer();
    const due = Math.min(lastChangeAt + quietMs, firstChangeAt + maxWaitMs);
    timer = setTimeout(settle, Math.max(0, due - Date.now()));
  };
  /** Aborts the settling build; its changes stay pending for the next. */
  const abandon = (waiting: Settling): void => {
    clearTimer();
    settling = undefined;
    restarted = true;
    waiting.controller.abort();
    waiting.resolve([]);
  };

  const unsubscribe = options.subscribe((path) => {
    if (signal.aborted) return;
    const now = Date.now();
    if (pending.size === 0) firstChangeAt = now;
    lastChangeAt = now;
    pending.add(path);
    if (settling !== undefined) {
      if (settling.reading || options.restartOn?.(path) === true) {
        abandon(settling);
      } else arm();
    } else wake?.();
    // During a build that has its context, the changes wait for it to end.
  });
  // Functions, not the variables inline: the loop's own tests must not narrow them for good.
  const stopped = (): boolean => signal.aborted;
  const stillSettling = (): boolean => settling !== undefined;
  const onAbort = (): void => {
    if (settling !== undefined) abandon(settling);
    wake?.();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    let first = true;
    while (!signal.aborted) {
      if (!first && pending.size === 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        if (stopped()) break;
      }
      const controller = new AbortController();
      const forward = (): void => {
        controller.abort(signal.reason);
      };
      signal.addEventListener('abort', forward, { once: true });
      let own: Settling | undefined;
      const settled = first
        ? Promise.resolve<readonly string[]>([])
        : new Promise<readonly string[]>((resolve) => {
            own = { resolve, controller, readAhead: !restarted, reading: false };
            settling = own;
            arm();
          });
      first = false;
      restarted = false;
      const readContext = (): Promise<void> => {
        if (own !== undefined && settling === own && own.readAhead) {
          own.reading = true;
          return Promise.resolve();
        }
        return settled.then(() => undefined);
      };
      try {
        await options.build(settled, controller.signal, readContext);
      } finally {
        signal.removeEventListener('abort', forward);
      }
      // A build that ended before its burst did (it failed reading its Dockerfile, say) is
      // that burst's build: the burst's changes are its own, and the next build waits for more.
      if (stillSettling()) await settled;
      // After a restart (or changes during the build) `pending` holds changes: the next build
      // starts at once.
    }
  } finally {
    clearTimer();
    signal.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}
