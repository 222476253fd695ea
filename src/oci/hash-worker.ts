import { Worker } from 'node:worker_threads';

/**
 * sha256/sha512 and crc32 on a worker thread, so that hashing a big layer (its tar for the
 * diff_id and the gzip trailer, its blob for the digest) runs on the second core while the main
 * thread reads, copies and compresses. Writing a 300 MB layer hashed 600 MB and summed 300 MB
 * for the crc on the main thread (~0.5 s of its ~1 s on this project's 2-core machine).
 *
 * The bytes reach the worker through one SharedArrayBuffer of fixed slots, shared by every
 * digest of the process: `update` copies a chunk into free slots (a memcpy, ~10x cheaper than
 * the hash) and posts their numbers; the worker hashes them in order and hands each slot back.
 * A fresh ArrayBuffer per chunk (transferred) cost more than the hash itself here: each MiB of
 * new memory is 256 page faults. Slots are never held between calls, so digests in parallel
 * never wait on one another for more than the worker's queue.
 */

export type OffThreadAlgorithm = 'sha256' | 'sha512' | 'crc32';

const SLOT = 1024 * 1024;
const SLOTS = 8;
/**
 * Pieces in shared memory from this size on are hashed where they are, not copied into slots:
 * the compressor's 1 MiB blocks (see `sharedBuffer`), which the main thread copied for ~80 ms
 * per 300 MB. Small ones (stored-block headers) cost less copied than a message each.
 */
const SHARED_IN_PLACE = 64 * 1024;

/**
 * A buffer the hashing worker can read in place (shared memory): `OffThreadDigest.update` sends
 * a reference to it instead of a copy, and its promise resolves once the worker has read it.
 */
export function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

/**
 * The worker's side, eval'd (the CLI is one bundled file). import() rather than require: an
 * eval'd worker is an ES module when the process runs with --input-type=module.
 */
const WORKER_SOURCE = String.raw`
(async () => {
  const { parentPort, workerData } = await import('node:worker_threads');
  const { createHash } = await import('node:crypto');
  const { crc32 } = await import('node:zlib');
  const shared = Buffer.from(workerData.shared);
  const slot = workerData.slot;
  const states = new Map();
  // Messages posted before this listener wait in the port.
  parentPort.on('message', (message) => {
    if (message.op === 'start') {
      states.set(message.id, message.algorithms.map((algorithm) =>
        algorithm === 'crc32' ? { crc: 0 } : { hash: createHash(algorithm) }));
    } else if (message.op === 'update') {
      const data = shared.subarray(message.slot * slot, message.slot * slot + message.length);
      for (const state of states.get(message.id)) {
        if (state.hash) state.hash.update(data);
        else state.crc = crc32(data, state.crc);
      }
      parentPort.postMessage({ op: 'free', slot: message.slot });
    } else if (message.op === 'updateShared') {
      const data = Buffer.from(message.memory, message.offset, message.length);
      for (const state of states.get(message.id)) {
        if (state.hash) state.hash.update(data);
        else state.crc = crc32(data, state.crc);
      }
      parentPort.postMessage({ op: 'released', ticket: message.ticket });
    } else if (message.op === 'end') {
      const results = states.get(message.id).map((state) => state.hash ? state.hash.digest('hex') : state.crc >>> 0);
      states.delete(message.id);
      parentPort.postMessage({ op: 'done', id: message.id, results });
    }
  });
})();
`;

type WorkerMessage =
  | { readonly op: 'free'; readonly slot: number }
  | { readonly op: 'released'; readonly ticket: number }
  | { readonly op: 'done'; readonly id: number; readonly results: readonly (string | number)[] };

class HashWorker {
  private readonly worker: Worker;
  private readonly shared = new SharedArrayBuffer(SLOT * SLOTS);
  private readonly view = Buffer.from(this.shared);
  private readonly free: number[] = [...Array(SLOTS).keys()];
  private readonly slotWaiters: (() => void)[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (results: readonly (string | number)[]) => void; reject: (error: Error) => void }
  >();
  /** Shared memory the worker is reading in place, by ticket: resolved when it is done. */
  private readonly reading = new Map<number, () => void>();
  private nextTicket = 0;
  private nextId = 0;
  private active = 0;
  failed: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { shared: this.shared, slot: SLOT } });
    this.worker.on('message', (message: WorkerMessage) => {
      if (message.op === 'free') {
        this.free.push(message.slot);
        this.slotWaiters.shift()?.();
      } else if (message.op === 'released') {
        const release = this.reading.get(message.ticket);
        this.reading.delete(message.ticket);
        release?.();
      } else {
        const done = this.pending.get(message.id);
        this.pending.delete(message.id);
        done?.resolve(message.results);
      }
    });
    const fail = (error: Error): void => {
      this.failed ??= error;
      for (const done of this.pending.values()) done.reject(error);
      this.pending.clear();
      // Nothing reads that memory any more; the digests it was for fail at their end.
      for (const release of this.reading.values()) release();
      this.reading.clear();
      for (const wake of this.slotWaiters.splice(0)) wake();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      fail(new Error(`the hashing worker exited (code ${code})`));
    });
    // After the listeners: a 'message' listener refs the worker's port again.
    this.worker.unref();
  }

  start(algorithms: readonly OffThreadAlgorithm[]): number {
    const id = this.nextId++;
    // Referenced while a digest is open: its result arrives only through the worker.
    if (this.active++ === 0) this.worker.ref();
    this.worker.postMessage({ op: 'start', id, algorithms });
    return id;
  }

  /**
   * Copies `pieces` one after the other into free slots (packed: many small pieces share one)
   * and queues the slots; resolves once all of it is copied.
   */
  async update(id: number, pieces: readonly Uint8Array[], reads: Promise<void>[]): Promise<void> {
    let slot: number | undefined;
    let fill = 0;
    for (const piece of pieces) {
      if (piece.buffer instanceof SharedArrayBuffer && piece.length >= SHARED_IN_PLACE) {
        if (this.failed !== undefined) throw this.failed;
        // After what was copied before it, in order: the slot is posted first.
        if (slot !== undefined) this.worker.postMessage({ op: 'update', id, slot, length: fill });
        slot = undefined;
        reads.push(this.readInPlace(id, piece));
        continue;
      }
      for (let offset = 0; offset < piece.length;) {
        if (this.failed !== undefined) throw this.failed;
        if (slot === undefined) {
          slot = this.free.pop();
          if (slot === undefined) {
            // Never waits while holding a slot: a full one was posted first.
            await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
            continue;
          }
          fill = 0;
        }
        const length = Math.min(SLOT - fill, piece.length - offset);
        this.view.set(piece.subarray(offset, offset + length), slot * SLOT + fill);
        fill += length;
        offset += length;
        if (fill === SLOT) {
          this.worker.postMessage({ op: 'update', id, slot, length: fill });
          slot = undefined;
        }
      }
    }
    if (slot !== undefined) this.worker.postMessage({ op: 'update', id, slot, length: fill });
  }

  /** Has the worker hash `piece` where it is; resolves when the worker is done with it. */
  private readInPlace(id: number, piece: Uint8Array): Promise<void> {
    const ticket = this.nextTicket++;
    const read = new Promise<void>((resolve) => this.reading.set(ticket, resolve));
    // The SharedArrayBuffer itself is posted (shared, not copied) with each piece: the worker
    // keeps no reference, so nothing has to be registered or forgotten.
    this.worker.postMessage({
      op: 'updateShared',
      id,
      ticket,
      memory: piece.buffer,
      offset: piece.byteOffset,
      length: piece.length,
    });
    return read;
  }

  /** Whether `update` would copy `length` bytes at once, without waiting for a slot. */
  hasRoomFor(length: number): boolean {
    return this.failed === undefined && this.free.length * SLOT >= length;
  }

  end(id: number): Promise<readonly (string | number)[]> {
    return new Promise((resolve, reject) => {
      const settle = (): void => {
        if (--this.active === 0) this.worker.unref();
      };
      if (this.failed !== undefined) {
        settle();
        reject(this.failed);
        return;
      }
      this.pending.set(id, {
        resolve: (results) => {
          settle();
          resolve(results);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.worker.postMessage({ op: 'end', id });
    });
  }
}

let shared: HashWorker | undefined;

function hashWorker(): HashWorker {
  if (shared === undefined || shared.failed !== undefined) shared = new HashWorker();
  return shared;
}

/**
 * One or more digests of the same bytes, computed on the shared worker. Chunks are copied
 * before `update` resolves (the caller may reuse its buffer then); `update` waits only when the
 * worker is behind by all its slots. `results` ends the digest: hex strings for the hashes, the
 * crc32 as a number, in the order of `algorithms`.
 */
export class OffThreadDigest {
  private readonly worker = hashWorker();
  private readonly id: number;

  constructor(readonly algorithms: readonly OffThreadAlgorithm[]) {
    this.id = this.worker.start(algorithms);
  }

  /**
   * Synchronous when there is room (the common case), so a stream can pass the chunk on at once.
   * Pieces are hashed one after the other, as if they were one chunk. The promise resolves when
   * the caller may reuse the memory: once it is copied, or, for pieces in shared memory (see
   * `sharedBuffer`), which are read in place, once the worker has hashed them.
   */
  update(chunk: Uint8Array | readonly Uint8Array[]): Promise<void> | undefined {
    // A late update would be silently left out of a digest already sent: a bug, said loudly.
    if (this.ended !== undefined) throw new Error('OffThreadDigest: update after results');
    const pieces = chunk instanceof Uint8Array ? [chunk] : chunk;
    let length = 0;
    for (const piece of pieces) length += piece.length;
    if (length === 0) return undefined;
    const reads: Promise<void>[] = [];
    if (this.worker.hasRoomFor(length)) {
      const copying = this.worker.update(this.id, pieces, reads);
      copying.catch(() => undefined);
      if (reads.length === 0) return undefined;
      return Promise.all([copying, ...reads]).then(() => undefined);
    }
    return this.worker.update(this.id, pieces, reads).then(() => Promise.all(reads).then(() => undefined));
  }

  private ended: Promise<readonly (string | number)[]> | undefined;

  results(): Promise<readonly (string | number)[]> {
    this.ended ??= this.worker.end(this.id);
    return this.ended;
  }

  /** Ends a digest whose result is not wanted (a failed write), so the worker may go idle. */
  abandon(): void {
    this.results().catch(() => undefined);
  }
}
