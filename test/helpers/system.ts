import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/**
 * Tests that need a system tool must fail, not skip, when CI is set (CI installs everything
 * in .ci/run); on a developer machine they skip with a message naming the Debian package.
 */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const inCI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

/**
 * Returns true when the test may run. Missing tool: throws under CI, otherwise warns once and
 * returns false so the caller can `describe.skipIf(!requireTool(...))`.
 */
export function requireTool(command: string, debianPackage: string): boolean {
  if (hasCommand(command)) return true;
  const message = `missing "${command}": install the Debian package ${debianPackage} (apt-get install ${debianPackage})`;
  if (inCI) throw new Error(`CI is set and ${message}`);
  console.warn(`skipping: ${message}`);
  return false;
}

export const isRoot = process.getuid?.() === 0;

const SUBORDINATE_IDS_LOCK = '/run/stratum-test-subordinate-ids.lock';

/**
 * Test files that add a range to /etc/subuid and /etc/subgid, or whose cases depend on there
 * being none, hold this lock for their whole run: vitest runs files side by side, and those two
 * files are the machine's. A mkdir lock with the holder's PID, so a killed holder does not block
 * the next run. Returns the release function.
 */
export async function lockSubordinateIds(): Promise<() => void> {
  const pidFile = join(SUBORDINATE_IDS_LOCK, 'pid');
  for (;;) {
    try {
      mkdirSync(SUBORDINATE_IDS_LOCK);
      writeFileSync(pidFile, String(process.pid));
      return () => {
        rmSync(SUBORDINATE_IDS_LOCK, { recursive: true, force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : '0');
    if (holder > 0 && !processAlive(holder)) rmSync(SUBORDINATE_IDS_LOCK, { recursive: true, force: true });
    else await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** lockSubordinateIds held from the calling describe's start to its end. */
export function holdSubordinateIdsLock(): void {
  let unlock: (() => void) | undefined;
  beforeAll(async () => {
    unlock = await lockSubordinateIds();
  }, 600_000);
  afterAll(() => {
    unlock?.();
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
