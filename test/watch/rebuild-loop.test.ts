import { describe, expect, it } from 'vitest';
import { runRebuildLoop } from '../../src/watch/index.js';

/** The schedule alone, fed changes by hand: what builds run, and with which changes. No timings asserted. */
function harness() {
  let emit: (path: string) => void = () => undefined;
  const builds: string[][] = [];
  const controller = new AbortController();
  let running = 0;
  let overlapped = false;
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  const loop = runRebuildLoop({
    signal: controller.signal,
    quietMs: 20,
    subscribe: (listener) => {
      emit = listener;
      return () => {
        emit = () => undefined;
      };
    },
    build: async (changed) => {
      running++;
      if (running > 1) overlapped = true;
      builds.push([...changed]);
      if (gate !== undefined) await gate;
      running--;
    },
  });
  return {
    loop,
    builds,
    emit: (path: string) => {
      emit(path);
    },
    overlapped: () => overlapped,
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
