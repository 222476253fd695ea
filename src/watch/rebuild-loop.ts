/**
 * The watch loop's schedule: a first build at once, then one build per burst of changes.
 *
 * - Debounced: a build starts once no change has come for `quietMs` (an editor's save is a
 *   temporary file, a write and a rename within milliseconds: one build), or `maxWaitMs` after
 *   the first change of a burst that never goes quiet (a log file written without pause).
 * - Never two builds at once: changes that come during a build are collected, and one more
 *   build follows it (not one per change).
 * - `signal` ends the loop: the build running gets it (it stops and cleans up), and the loop
 *   resolves once that build has unwound.
 */
export interface RebuildLoopOptions {
  /** Runs one build; `changed` is what triggered it (empty for the first). Errors are the caller's to report. */
  readonly build: (changed: readonly string[], signal: AbortSignal) => Promise<void>;
  /** Subscribes to changes (paths as they should be shown); returns the unsubscribe. */
  readonly subscribe: (onChange: (path: string) => void) => () => void;
  readonly signal: AbortSignal;
  /** How long the context must stay quiet before a build starts (default 15 ms). */
  readonly quietMs?: number;
  /** The longest a burst of changes delays its build (default 1 s). */
  readonly maxWaitMs?: number;
}

export const DEFAULT_QUIET_MS = 15;
const DEFAULT_MAX_WAIT_MS = 1000;

export async function runRebuildLoop(options: RebuildLoopOptions): Promise<void> {
  const { signal } = options;
  // A function, not `signal.aborted` inline: the loop's condition must not narrow it for good.
  const stopped = (): boolean => signal.aborted;
  const quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  let pending = new Set<string>();
  let firstChangeAt = 0;
  let lastChangeAt = 0;
  // Resolved when a burst of changes is ready to build (or the loop is to end).
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const arm = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    const now = Date.now();
    const due = Math.min(lastChangeAt + quietMs, firstChangeAt + maxWaitMs);
    timer = setTimeout(
      () => {
        timer = undefined;
        wake?.();
      },
      Math.max(0, due - now),
    );
  };
  let building = false;
  const unsubscribe = options.subscribe((path) => {
    if (signal.aborted) return;
    const now = Date.now();
    if (pending.size === 0) firstChangeAt = now;
    lastChangeAt = now;
    pending.add(path);
    // During a build the changes wait for it to end; the timer is armed then.
    if (!building) arm();
  });
  const onAbort = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    wake?.();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    let changed: readonly string[] = [];
    while (!signal.aborted) {
      building = true;
      try {
        await options.build(changed, signal);
      } finally {
        building = false;
      }
      if (stopped()) break;
      // What came during the build is built next: its quiet time counts from its last change.
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (pending.size > 0) arm();
      });
      wake = undefined;
      changed = [...pending];
      pending = new Set();
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}
