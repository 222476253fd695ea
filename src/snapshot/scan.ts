import { lstat, readdir, readlink, type BigIntStats, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { joinRel } from './paths.js';
import type { EntryStat, FileType, ScanOptions, TreeSnapshot } from './types.js';

/**
 * How many lstat/readdir/readlink calls may be in flight. Enough to keep libuv's threadpool and a
 * cold disk busy; more only adds queueing. The callback API is used because it is measurably
 * cheaper per call than fs/promises on a 20,000-file tree.
 */
const CONCURRENCY = 48;

function typeOf(stats: BigIntStats): FileType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFIFO()) return 'fifo';
  return 'socket';
}

/**
 * Records the lstat fields of every path under `root` (the root itself excluded). Reads no file
 * content: a scan of an unchanged tree costs one readdir per directory and one lstat per entry.
 */
export async function scanTree(root: string, options: ScanOptions = {}): Promise<TreeSnapshot> {
  const startedNs = wallClockNs();
  const entries = new Map<string, EntryStat>();
  const exclude = options.exclude;
  const signal = options.signal;

  return new Promise<TreeSnapshot>((resolve, reject) => {
    let active = 0;
    let failed = false;
    const queue: (() => void)[] = [];

    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    const schedule = (task: () => void): void => {
      queue.push(task);
      pump();
    };
    const done = (): void => {
      active--;
      pump();
    };
    const pump = (): void => {
      if (failed) return;
      if (signal?.aborted === true) {
        fail(new StratumError('ABORTED', `scan of ${root} aborted`));
        return;
      }
      while (active < CONCURRENCY && queue.length > 0) {
        active++;
        queue.shift()!();
      }
      if (active === 0 && queue.length === 0) resolve({ root, startedNs, entries });
    };

    const statEntry = (rel: string): void => {
      schedule(() => {
        lstat(join(root, rel), { bigint: true }, (error, stats) => {
          if (error) {
            // Vanished between readdir and lstat: a step's process is still writing. Skip it;
            // the next scan sees the final state.
            if (errnoCode(error) !== 'ENOENT') fail(scanError(root, rel, error));
            done();
            return;
          }
          record(rel, stats);
          done();
        });
      });
    };

    const record = (rel: string, stats: BigIntStats): void => {
      const type = typeOf(stats);
      const base = {
        type,
        mode: Number(stats.mode & 0o7777n),
        uid: Number(stats.uid),
        gid: Number(stats.gid),
        size: type === 'file' ? Number(stats.size) : 0,
        mtimeNs: stats.mtimeNs,
        ctimeNs: stats.ctimeNs,
        ino: stats.ino,
        dev: stats.dev,
        nlink: Number(stats.nlink),
        rdev: stats.rdev,
      };
      if (type === 'symlink') {
        schedule(() => {
          readlink(join(root, rel), (error, target) => {
            if (error) {
              if (errnoCode(error) !== 'ENOENT') fail(scanError(root, rel, error));
            } else {
              entries.set(rel, { ...base, linkTarget: target });
            }
            done();
          });
        });
        return;
      }
      entries.set(rel, base);
      if (type === 'dir') readDir(rel);
    };

    const readDir = (rel: string): void => {
      schedule(() => {
        readdir(join(root, rel), { withFileTypes: true }, (error, dirents: Dirent[]) => {
          if (error) {
            if (errnoCode(error) !== 'ENOENT') fail(scanError(root, rel, error));
            done();
            return;
          }
          for (const dirent of dirents) {
            const child = joinRel(rel, dirent.name);
            if (exclude?.(child) === true) continue;
            statEntry(child);
          }
          done();
        });
      });
    };

    readDir('');
  });
}

function wallClockNs(): bigint {
  // Date.now() has millisecond resolution, which is all "racy" detection needs.
  return BigInt(Date.now()) * 1_000_000n;
}

function scanError(root: string, rel: string, error: unknown): StratumError {
  const detail = error instanceof Error ? error.message : String(error);
  return new StratumError('IO', `scanning ${join(root, rel)}: ${detail}`, { cause: error });
}

/** An empty snapshot: diffing against it makes every path `added` (a base layer, a directory). */
export function emptySnapshot(root: string): TreeSnapshot {
  return { root, startedNs: 0n, entries: new Map() };
}
