import {
  closeSync,
  fdatasync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  writeSync,
} from 'node:fs';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { syncDirectory } from '../util/atomic-file.js';
import { resolvedNow } from '../util/now.js';

const datasync = promisify(fdatasync);

/**
 * Which directories a store placed without waiting for their bytes to reach the disk, per boot
 * of the machine, so that a crash costs a re-extraction instead of a torn layer.
 *
 * An unpacked layer (or a kept root filesystem) is derived data: its blob, fsync'd, is the
 * truth. Flushing every one before its rename (syncfs, or an overlay upper mounted without
 * `volatile`) made builds wait for the disk: ~0.5 s after extracting a 464 MB base, 0.25 s after
 * a RUN making 20,000 files, and whatever the disk owed from earlier. Skipping the flush is what
 * containerd does, and why a power loss there leaves zero-byte files under a good layer's name
 * (containerd #5854/#8895/#9115), mounted by every later build. Here each placement is written
 * down first, durably and cheaply (one line, fdatasync'd), and the next build after a reboot
 * removes what an earlier boot placed and no flush covered, to be extracted again from its blob:
 *
 *   <dir>/<boot-id>           `<uptime> <name>` per placement, appended before the rename
 *   <dir>/<boot-id>.flushed   the uptime at which the last completed flush (syncfs) started
 *
 * Within one boot nothing is lost: a process killed after writing keeps its writes in the page
 * cache, which every reader shares; only the kernel's end (a crash, a power loss) changes the
 * boot id. Uptimes are /proc/uptime's (CLOCK_BOOTTIME, 10 ms steps), one clock for every process
 * of a boot; a line strictly below the flushed mark was on disk before that flush started.
 */
export class FlushJournal {
  private constructor(
    readonly dir: string,
    readonly bootId: string,
  ) {}

  /** The journal in `dir`, or undefined where the kernel gives no boot id (then flush instead). */
  static async open(dir: string): Promise<FlushJournal | undefined> {
    const bootId = await readBootId();
    if (bootId === undefined) return undefined;
    mkdirSync(dir, { recursive: true });
    return new FlushJournal(dir, bootId);
  }

  /**
   * Writes down that `name` is about to be placed, and waits until that line is on disk: the
   * caller renames only after, so no crash can keep the rename and lose the line.
   */
  async record(name: string): Promise<void> {
    // Synchronous but for the flush itself: a placement is recorded at every step's commit,
    // where each asynchronous call was a thread-pool round trip.
    const uptime = readUptime();
    const file = join(this.dir, this.bootId);
    const fd = openSync(file, 'a');
    try {
      const created = fstatSync(fd).size === 0;
      writeSync(fd, `${uptime ?? '-'} ${name}\n`);
      await datasync(fd);
      // A new journal's own name must be on disk too, or a crash could lose the whole file.
      if (created) await syncDirectory(this.dir);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * What earlier boots placed that no flush covered (possibly torn), one entry per earlier boot;
   * `forget` each once its names are removed from the store.
   */
  async unflushedFromEarlierBoots(): Promise<{ readonly bootId: string; readonly names: string[] }[]> {
    const earlier: { bootId: string; names: string[] }[] = [];
    let entries: string[] = [];
    try {
      entries = readdirSync(this.dir);
    } catch {
      // no journal yet
    }
    for (const entry of entries) {
      if (entry === this.bootId || entry.includes('.')) continue;
      const flushedAt = parseUptime(
        await readFile(join(this.dir, `${entry}.flushed`), 'utf8').catch(() => ''),
      );
      const names = new Set<string>();
      const text = await readFile(join(this.dir, entry), 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        const space = line.indexOf(' ');
        if (space <= 0) continue;
        const placedAt = parseUptime(line.slice(0, space));
        // A line torn by the crash has no trustworthy time: its name goes too.
        if (placedAt === undefined || flushedAt === undefined || placedAt >= flushedAt)
          names.add(line.slice(space + 1));
      }
      earlier.push({ bootId: entry, names: [...names] });
    }
    return earlier;
  }

  /** Removes an earlier boot's journal, its flush mark and any mark a killed flush left half written. */
  async forget(bootId: string): Promise<void> {
    await rm(join(this.dir, bootId), { force: true });
    for (const entry of await readdir(this.dir).catch(() => []))
      if (entry.startsWith(`${bootId}.`)) await rm(join(this.dir, entry), { force: true });
  }

  /** Where the uptime of this boot's last completed flush is written (by `flushmark`). */
  get flushedMark(): string {
    return join(this.dir, `${this.bootId}.flushed`);
  }

  /**
   * Whether this boot's journal has lines no flush covers, and the last flush is at least
   * `intervalMs` old (or there was none): then a flush in the background (the overlay helper's
   * `flushmark`: syncfs in a child nothing waits for, which marks the uptime it started at once
   * it is done) keeps what a crash would make the next boot extract again small, at most about
   * once per interval however often builds end.
   */
  async wantsFlush(intervalMs = 30_000): Promise<boolean> {
    const written = await stat(join(this.dir, this.bootId)).catch(() => undefined);
    if (written === undefined) return false;
    const flushed = await stat(this.flushedMark).catch(() => undefined);
    if (flushed === undefined) return true;
    return flushed.mtimeMs <= written.mtimeMs && Date.now() - flushed.mtimeMs >= intervalMs;
  }
}

/** The kernel's id of this boot (a crash or reboot changes it), or undefined where it gives none. */
export function readBootId(): Promise<string | undefined> {
  return resolvedNow(bootIdNow);
}

/** Synchronous: read at every build's start, where a round trip costs more than the call. */
function bootIdNow(): string | undefined {
  let text = '';
  try {
    text = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8');
  } catch {
    // no boot id: no journal
  }
  const id = text.trim();
  return /^[0-9a-f-]{8,64}$/.test(id) ? id : undefined;
}

function readUptime(): string | undefined {
  let text = '';
  try {
    text = readFileSync('/proc/uptime', 'utf8');
  } catch {
    // no /proc: a line without a time, which recovery treats as not covered
  }
  const first = text.split(' ')[0] ?? '';
  return parseUptime(first) === undefined ? undefined : first;
}

function parseUptime(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return undefined;
  return Number(trimmed);
}
