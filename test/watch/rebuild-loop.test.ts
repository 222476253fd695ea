import { describe, expect, it } from 'vitest';
import { runRebuildLoop } from '../../src/watch/index.js';

/** The schedule alone, fed changes by hand: what builds run, and with which changes. No timings asserted. */
function harness(
  options: {
    restartOn?: (path: string) => boolean;
    failEarly?: boolean;
    quietMs?: number;
    /** The build reads its context first (readContext), once `readGate` (if any) opens. */
    reads?: boolean;
  } = {},
) {
  let emit: (path: string) => void = () => undefined;
  const builds: string[][] = [];
  /** Builds started (before their burst settled), and those aborted to start again. */
  let started = 0;
  let aborted = 0;
  const controller = new AbortController();
  let running = 0;
  let overlapped = false;
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  let openReadGate: (() => void) | undefined;
  let readGate: Promise<void> | undefined;
  /** Per build started: whether it read its context before its burst was over. */
  const readEarly: boolean[] = [];
  const loop = runRebuildLoop({
    signal: controller.signal,
    quietMs: options.quietMs ?? 20,
    ...(options.restartOn ? { restartOn: options.restartOn } : {}),
    subscribe: (listener) => {
      emit = listener;
      return () => {
        emit = () => undefined;
      };
    },
    build: async (settled, signal, readContext) => {
      running++;
      started++;
      if (running > 1) overlapped = true;
      try {
        // A build that fails reading its Dockerfile ends before its burst does.
        if (options.failEarly === true && started > 1) return;
        if (options.reads === true) {
          if (readGate !== undefined) await readGate;
          let over = false;
          void settled.then(() => (over = true));
          await readContext();
          // Reading now: the rest of the build (a RUN, say) takes a while.
          readEarly.push(!over);
          await new Promise((done) => setTimeout(done, 50));
        }
        const changed = await settled;
        if (signal.aborted) {
          aborted++;
          return;
        }
        builds.push([...changed]);
        if (gate !== undefined) await gate;
      } finally {
        running--;
      }
    },
  });
  return {
    loop,
    builds,
    started: () => started,
    aborted: () => aborted,
    emit: (path: string) => {
      emit(path);
    },
    overlapped: () => overlapped,
    readEarly,
    holdReads: () => {
      readGate = new Promise((done) => {
        openReadGate = done;
      });
    },
    openReads: () => {
      readGate = undefined;
      openReadGate?.();
    },
    hold: () => {
      gate = new Promise((done) => {
        release = done;
      });
    },
    release: () => {
      gate = undefined;
      release?.();
    },
    stop: () => {
      controller.abort();
    },
  };
}

const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((done) => setTimeout(done, 5));
  expect(condition()).toBe(true);
};
const settle = (): Promise<void> => new Promise((done) => setTimeout(done, 200));

describe('the rebuild loop', () => {
  it('builds once at start, then once per burst of changes', async () => {
    const h = harness();
    await until(() => h.builds.length === 1);
    for (const path of ['a', 'b', 'a', 'c']) h.emit(path);
    await until(() => h.builds.length === 2);
    await settle();
    expect(h.builds).toEqual([[], ['a', 'b', 'c']]);
    h.stop();
    await h.loop;
  });

  it('changes during a build queue one more build after it, never a second one beside it', async () => {
    const h = harness();
    await until(() => h.builds.length === 1);
    h.hold();
    h.emit('x');
    await until(() => h.builds.length === 2);
    for (const path of ['y', 'z', 'y']) h.emit(path);
    await settle();
    expect(h.builds).toHaveLength(2); // still held: nothing else started
    h.release();
    await until(() => h.builds.length === 3);
    await settle();
    expect(h.builds).toEqual([[], ['x'], ['y', 'z']]);
    expect(h.overlapped()).toBe(false);
    h.stop();
    await h.loop;
  });

  it('a build starts at the first change of a burst and gets the context when the burst is over', async () => {
    const h = harness({ quietMs: 300 });
    await until(() => h.builds.length === 1);
    h.emit('a');
    await until(() => h.started() === 2);
    expect(h.builds).toHaveLength(1); // started, waiting for quiet
    h.emit('b');
    await until(() => h.builds.length === 2);
    await settle();
    expect(h.builds).toEqual([[], ['a', 'b']]);
    expect(h.started()).toBe(2);
    h.stop();
    await h.loop;
  });

  it('a change to what the build read early (the Dockerfile) starts it again with the whole burst', async () => {
    const h = harness({ restartOn: (path) => path === 'Dockerfile', quietMs: 300 });
    await until(() => h.builds.length === 1);
    h.emit('a');
    await until(() => h.started() === 2);
    h.emit('Dockerfile');
    await until(() => h.builds.length === 2);
    await settle();
    expect(h.aborted()).toBe(1);
    expect(h.started()).toBe(3);
    expect(h.builds).toEqual([[], ['a', 'Dockerfile']]);
    // Once the context is the build's, a Dockerfile change waits for the next build.
    h.hold();
    h.emit('c');
    await until(() => h.builds.length === 3);
    h.emit('Dockerfile');
    await settle();
    expect(h.aborted()).toBe(1);
    h.release();
    await until(() => h.builds.length === 4);
    expect(h.builds.at(-1)).toEqual(['Dockerfile']);
    h.stop();
    await h.loop;
  });

  it('a build reads its context ahead of the quiet; a change once it reads starts it again, and that one waits for the quiet', async () => {
    const h = harness({ reads: true, quietMs: 300 });
    await until(() => h.builds.length === 1);
    h.emit('a');
    await until(() => h.readEarly.length === 2);
    expect(h.readEarly[1]).toBe(true); // read at once, the burst not over
    h.emit('b');
    await until(() => h.builds.length === 2);
    await settle();
    expect(h.aborted()).toBe(1);
    expect(h.started()).toBe(3);
    expect(h.readEarly[2]).toBe(false); // the restarted build read once the burst was over
    expect(h.builds).toEqual([[], ['a', 'b']]);
    // The next burst's build reads ahead again.
    h.emit('c');
    await until(() => h.builds.length === 3);
    expect(h.readEarly[3]).toBe(true);
    expect(h.builds.at(-1)).toEqual(['c']);
    h.stop();
    await h.loop;
  });

  it('a change before the build reads its context only extends the quiet', async () => {
    const h = harness({ reads: true, quietMs: 200 });
    await until(() => h.builds.length === 1);
    h.holdReads();
    h.emit('a');
    await until(() => h.started() === 2);
    h.emit('b');
    h.openReads();
    await until(() => h.builds.length === 2);
    await settle();
    expect(h.aborted()).toBe(0);
    expect(h.started()).toBe(2);
    expect(h.builds).toEqual([[], ['a', 'b']]);
    h.stop();
    await h.loop;
  });

  it("a build that fails before its burst is over is that burst's one build", async () => {
    const h = harness({ failEarly: true });
    await until(() => h.builds.length === 1);
    h.emit('a');
    h.emit('b');
    await settle();
    expect(h.started()).toBe(2);
    h.emit('c');
    await settle();
    expect(h.started()).toBe(3);
    h.stop();
    await h.loop;
  });

  it('the signal ends the loop during a build and between builds', async () => {
    const h = harness();
    await until(() => h.builds.length === 1);
    h.stop();
    await h.loop;
    h.emit('late');
    await settle();
    expect(h.builds).toHaveLength(1);
    const held = harness();
    held.hold();
    await until(() => held.builds.length === 1);
    held.stop();
    held.release();
    await held.loop;
  });
});
