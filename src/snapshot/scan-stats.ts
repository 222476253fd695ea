import { lstatSync, type BigIntStats } from 'node:fs';
import { Worker } from 'node:worker_threads';

/**
 * The lstat calls of one big directory listing, shared by two threads: the scan's own (the main
 * thread) and a worker. An upperdir scan after a RUN that made 20,000 files spent ~130 ms of
 * main thread in lstat alone (~6 µs each on this project's 2-core VM, plus the BigIntStats
 * objects Node makes of each), while the other core waited.
 *
 * Both threads claim runs of CHUNK entries from one shared counter and write the fields the
 * scan keeps into shared arrays. The main thread takes the entries in listing order; when the
 * run it needs is not done yet, it stats the next unclaimed run itself instead of waiting, so a
 * worker that is slow to start or busy costs nothing. Anything that could not be statted (gone,
 * an error) is statted again by the scan itself, which then skips or fails as it always did.
 */

/** Entries claimed at a time (one counter increment, one wake-up). */
const CHUNK = 64;

// Number fields per entry (Float64Array), then bigint fields (BigInt64Array).
const MODE = 0;
const UID = 1;
const GID = 2;
const SIZE = 3;
const NLINK = 4;
const NUMBERS = 5;
const MTIME_NS = 0;
const CTIME_NS = 1;
const INO = 2;
const DEV = 3;
const RDEV = 4;
const BIGINTS = 5;

// state per run of CHUNK entries
const PENDING = 0;
const DONE = 1;

/** Per entry, from the worker: stat it again on the main thread (vanished, failed, not reached). */
const AGAIN = 1;

/** The fields of one entry's lstat, as the scan keeps them (see scan.ts toEntryStat). */
export interface RawStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly ino: bigint;
  readonly dev: bigint;
  readonly rdev: bigint;
}

const WORKER_SOURCE = String.raw`
(async () => {
  const { parentPort } = await import('node:worker_threads');
  const fs = await import('node:fs');
  parentPort.on('message', (job) => {
    const claim = new Int32Array(job.claim);
    const chunks = new Int32Array(job.chunks);
    const again = new Uint8Array(job.again);
    const numbers = new Float64Array(job.numbers);
    const bigints = new BigInt64Array(job.bigints);
    const count = job.paths.length;
    for (;;) {
      const chunk = Atomics.add(claim, 0, 1);
      const start = chunk * ${CHUNK};
      if (start >= count) break;
      const end = Math.min(count, start + ${CHUNK});
      for (let index = start; index < end; index++) {
        let stats;
        try {
          stats = fs.lstatSync(job.paths[index], { bigint: true, throwIfNoEntry: false });
        } catch {}
        if (stats === undefined) {
          again[index] = ${AGAIN};
          continue;
        }
        const n = index * ${NUMBERS};
        numbers[n + ${MODE}] = Number(stats.mode);
        numbers[n + ${UID}] = Number(stats.uid);
        numbers[n + ${GID}] = Number(stats.gid);
        numbers[n + ${SIZE}] = Number(stats.size);
        numbers[n + ${NLINK}] = Number(stats.nlink);
        const b = index * ${BIGINTS};
        bigints[b + ${MTIME_NS}] = stats.mtimeNs;
        bigints[b + ${CTIME_NS}] = stats.ctimeNs;
        bigints[b + ${INO}] = stats.ino;
        bigints[b + ${DEV}] = stats.dev;
        bigints[b + ${RDEV}] = stats.rdev;
      }
      Atomics.store(chunks, chunk, ${DONE});
      Atomics.notify(chunks, chunk);
    }
  });
})();
`;

let worker: Worker | undefined;
let workerFailed = false;

function statWorker(): Worker | undefined {
  if (workerFailed) return undefined;
  if (worker === undefined) {
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true });
    } catch {
      workerFailed = true;
      return undefined;
    }
    worker.on('error', () => {
      workerFailed = true;
      worker = undefined;
    });
    // Nothing is ever awaited from it: the process may end whenever it likes.
    worker.unref();
  }
  return worker;
}

/** Longest wait for a run the worker claimed, before the main thread stats it itself. */
const WAIT_LIMIT_MS = 5000;

/** From this many entries in one listing on, the worker shares its lstat calls. */
export const SHARED_STATS_FROM = 1024;

/**
 * lstat of every path in `paths` (fs paths: strings, or bytes for names that are not UTF-8),
 * by this thread and the worker. `take(index)` gives the entries in order.
 */
export class SharedStats {
  private readonly claim = new Int32Array(new SharedArrayBuffer(4));
  private readonly chunks: Int32Array;
  private readonly again: Uint8Array;
  private readonly numbers: Float64Array;
  private readonly bigints: BigInt64Array;
  /** Runs taken over from a worker that did not finish them in time: statted by the caller. */
  private readonly takenOver = new Set<number>();
  private readonly chunkCount: number;

  constructor(private readonly paths: readonly (string | Buffer)[]) {
    const count = Math.max(1, paths.length);
    this.chunkCount = Math.ceil(paths.length / CHUNK);
    this.chunks = new Int32Array(new SharedArrayBuffer(4 * Math.max(1, this.chunkCount)));
    this.again = new Uint8Array(new SharedArrayBuffer(count));
    this.numbers = new Float64Array(new SharedArrayBuffer(8 * NUMBERS * count));
    this.bigints = new BigInt64Array(new SharedArrayBuffer(8 * BIGINTS * count));
    statWorker()?.postMessage({
      claim: this.claim.buffer,
      chunks: this.chunks.buffer,
      again: this.again.buffer,
      numbers: this.numbers.buffer,
      bigints: this.bigints.buffer,
      paths,
    });
  }

  /**
   * Entry `index`'s fields, or undefined when the caller must lstat it itself (it vanished, the
   * call failed, or the worker took too long): the caller then skips or fails as it would have.
   * Entries are asked for in order.
   */
  take(index: number): RawStat | undefined {
    const chunk = Math.floor(index / CHUNK);
    if (index % CHUNK === 0) this.ready(chunk);
    if (this.again[index] === AGAIN || this.takenOver.has(chunk)) return undefined;
    const n = index * NUMBERS;
    const b = index * BIGINTS;
    return {
      mode: this.numbers[n + MODE]!,
      uid: this.numbers[n + UID]!,
      gid: this.numbers[n + GID]!,
      size: this.numbers[n + SIZE]!,
      nlink: this.numbers[n + NLINK]!,
      mtimeNs: this.bigints[b + MTIME_NS]!,
      ctimeNs: this.bigints[b + CTIME_NS]!,
      ino: this.bigints[b + INO]!,
      dev: this.bigints[b + DEV]!,
      rdev: this.bigints[b + RDEV]!,
    };
  }

  /** Ends the job (the end, or a failed scan): the worker claims nothing more. */
  stop(): void {
    Atomics.store(this.claim, 0, this.chunkCount);
  }

  /**
   * Waits until run `chunk` is done, statting unclaimed runs meanwhile rather than waiting: so
   * the two threads share the work whatever their speeds, and a worker still starting (or busy
   * with another scan) costs nothing.
   */
  private ready(chunk: number): void {
    let waited = 0;
    while (Atomics.load(this.chunks, chunk) !== DONE) {
      if (this.statNextUnclaimed()) continue;
      // The worker is statting this very run.
      if (Atomics.wait(this.chunks, chunk, PENDING, 50) === 'timed-out') waited += 50;
      if (waited >= WAIT_LIMIT_MS) {
        this.takenOver.add(chunk);
        return;
      }
    }
  }

  /** Claims and stats the next run nobody has claimed; false if there is none. */
  private statNextUnclaimed(): boolean {
    const next = Atomics.load(this.claim, 0);
    if (next >= this.chunkCount) return false;
    if (Atomics.compareExchange(this.claim, 0, next, next + 1) !== next) return true; // raced: retry
    const end = Math.min(this.paths.length, (next + 1) * CHUNK);
    for (let index = next * CHUNK; index < end; index++) {
      let stats: BigIntStats | undefined;
      try {
        stats = lstatSync(this.paths[index]!, { bigint: true, throwIfNoEntry: false });
      } catch {
        // Statted again in order by the caller, which fails with its own error.
      }
      if (stats === undefined) this.again[index] = AGAIN;
      else this.record(index, stats);
    }
    Atomics.store(this.chunks, next, DONE);
    return true;
  }

  /** What the worker writes for an entry, written here. */
  private record(index: number, stats: BigIntStats): void {
    const n = index * NUMBERS;
    this.numbers[n + MODE] = Number(stats.mode);
    this.numbers[n + UID] = Number(stats.uid);
    this.numbers[n + GID] = Number(stats.gid);
    this.numbers[n + SIZE] = Number(stats.size);
    this.numbers[n + NLINK] = Number(stats.nlink);
    const b = index * BIGINTS;
    this.bigints[b + MTIME_NS] = stats.mtimeNs;
    this.bigints[b + CTIME_NS] = stats.ctimeNs;
    this.bigints[b + INO] = stats.ino;
    this.bigints[b + DEV] = stats.dev;
    this.bigints[b + RDEV] = stats.rdev;
  }
}
