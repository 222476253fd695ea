import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { makeDirectories, makeDirectoriesSync } from './directories.js';
import { resolvedNow } from './now.js';

/**
 * Leases, as containerd and BuildKit have them, in files: what a running process needs from a
 * shared content store (blobs, unpacked layers) stays until that process ends, whatever a
 * `cache prune` in another process decides.
 *
 *   <dir>/lease-<pid>-<start>-<random>   one per process: the keys it holds, one a line
 *   <dir>/sweep-<pid>-<start>-<random>   one per sweep (a prune) while it marks and deletes
 *
 * `<start>` is the process's start time (/proc/PID/stat), so a PID reused after a SIGKILL does
 * not keep a dead process's lease alive; a file whose owner is gone is ignored and removed.
 *
 * The protocol, which makes "is it there?" and "I need it" one step against any sweep:
 *   holder: append the key to its lease, then wait until no live sweep runs, then look.
 *   sweep:  create its marker, then read the live leases, then what else refers to keys
 *           (images, cache entries), then delete the rest, then remove its marker.
 * A holder that appended before the sweep read the leases is seen; one that appended after
 * finds the marker and waits, so it looks only once the deletions are over.
 */

const LEASE = 'lease-';
const SWEEP = 'sweep-';

/** `<pid>-<start>` for this process (start time in clock ticks since boot; `0` off Linux). */
export function processIdentity(pid: number = process.pid): string | undefined {
  const start = startTimeOf(pid);
  return start === undefined ? undefined : `${pid}-${start}`;
}

function startTimeOf(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return process.platform === 'linux' ? undefined : '0';
    return '0';
  }
  // Field 22; the command name (field 2) may hold spaces and parentheses, so count from its end.
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? '0';
}

/** Whether the process named `<prefix><pid>-<start>-<random>` still runs (the same process, not a reuse of its PID). */
export function ownerIsLive(name: string, prefix = ''): boolean {
  const match = /^(\d+)-(\d+)-/.exec(name.slice(prefix.length));
  if (match === null) return false;
  const pid = Number(match[1]);
  if (pid === process.pid) return startTimeOf(pid) === match[2];
  const start = startTimeOf(pid);
  return start !== undefined && (start === '0' || start === match[2]);
}

function listDirSync(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/** Lease files of this process, removed on the way out (SIGKILL leaves them to ownerIsLive). */
const ownLeaseFiles = new Set<string>();
process.on('exit', () => {
  for (const file of ownLeaseFiles) {
    try {
      unlinkSync(file);
    } catch {
      // Already removed by a sweep that judged us dead, or the directory is gone.
    }
  }
});

/**
 * A lease in one lease directory: keys appended as its owner comes to need them, all let go by
 * `release` (or when the process ends). Its file is made at the first `hold`.
 */
export class Lease {
  private held = new Map<string, Promise<void>>();
  private file: string | undefined;

  constructor(readonly dir: string) {}

  /**
   * Holds `key` until `release` (or the process's end); resolves once no sweep can remove it
   * any more (after which the caller may check that it exists, and use it).
   */
  hold(key: string, signal?: AbortSignal): Promise<void> {
    let holding = this.held.get(key);
    if (holding === undefined) {
      // Synchronous appends and checks (a build holds a key per blob and layer it uses; each
      // asynchronous call was a thread-pool round trip on a step's path). The order is the
      // protocol's: the key is in the file before the sweep markers are looked at.
      holding = resolvedNow(() => {
        appendFileSync(this.path(), `${key}\n`);
        return sweepRunning(this.dir);
      }).then((sweeping) => (sweeping ? waitForSweeps(this.dir, signal) : undefined));
      holding.catch(() => this.held.delete(key));
      this.held.set(key, holding);
    }
    return holding;
  }

  /** Lets go of every key: a later `hold` starts a new lease file. */
  async release(): Promise<void> {
    const path = this.file;
    this.file = undefined;
    this.held = new Map();
    if (path === undefined) return;
    ownLeaseFiles.delete(path);
    await rm(path, { force: true });
  }

  private path(): string {
    if (this.file === undefined) {
      makeDirectoriesSync(this.dir);
      const file = join(
        this.dir,
        `${LEASE}${processIdentity() ?? `${process.pid}-0`}-${randomBytes(6).toString('hex')}`,
      );
      writeFileSync(file, '', { flag: 'wx' });
      ownLeaseFiles.add(file);
      this.file = file;
    }
    return this.file;
  }
}

/** Whether a live sweep has its marker in `dir` (a killed one's is ignored). */
function sweepRunning(dir: string): boolean {
  return listDirSync(dir).some((name) => name.startsWith(SWEEP) && ownerIsLive(name, SWEEP));
}

/** Waits while a live sweep runs in `dir` (a killed one's marker is ignored). */
export async function waitForSweeps(dir: string, signal?: AbortSignal): Promise<void> {
  for (;;) {
    signal?.throwIfAborted();
    if (!sweepRunning(dir)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs `sweep` with this process's marker in `dir`, passing it the keys live leases hold (read
 * after the marker is in place). Leases and markers of dead processes are removed on the way.
 */
export async function withSweep<T>(
  dir: string,
  sweep: (leased: ReadonlySet<string>) => Promise<T>,
): Promise<T> {
  await makeDirectories(dir);
  const marker = join(
    dir,
    `${SWEEP}${processIdentity() ?? `${process.pid}-0`}-${randomBytes(6).toString('hex')}`,
  );
  await writeFile(marker, '', { flag: 'wx' });
  try {
    return await sweep(await liveLeases(dir));
  } finally {
    await rm(marker, { force: true });
  }
}

/** The keys held by live leases in `dir`; dead processes' leases and markers are removed. */
export async function liveLeases(dir: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const name of listDirSync(dir)) {
    const prefix = name.startsWith(LEASE) ? LEASE : name.startsWith(SWEEP) ? SWEEP : undefined;
    if (prefix === undefined) continue;
    if (!ownerIsLive(name, prefix)) {
      await rm(join(dir, name), { force: true });
      continue;
    }
    if (prefix === SWEEP) continue;
    const text = await readFile(join(dir, name), 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line !== '') keys.add(line);
  }
  return keys;
}
