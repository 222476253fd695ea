import { errnoCode } from '../errors.js';

/**
 * Temporary files and directories carry their owner's PID in their name
 * (`<prefix><pid>-<random>`), so that whoever finds one later can tell whether the process that
 * made it still runs. A name whose owner is gone was left by a crash (SIGKILL, power loss) and
 * may be removed; one whose owner runs is in use. PIDs are reused, so a dead owner may look
 * alive; that only keeps garbage a little longer, it never removes what a live build uses.
 */
export function ownedName(prefix: string, random: string): string {
  return `${prefix}${process.pid}-${random}`;
}

/** The owner's PID, or undefined when `name` is not `<prefix><pid>-…`. */
export function ownerOf(name: string, prefix: string): number | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const match = /^(\d+)-/.exec(name.slice(prefix.length));
  return match === null ? undefined : Number(match[1]);
}

export function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) !== 'ESRCH'; // EPERM: alive, just someone else's
  }
}

/** True when `name` is `<prefix><pid>-…` and that process no longer runs. */
export function isAbandoned(name: string, prefix: string): boolean {
  const pid = ownerOf(name, prefix);
  return pid !== undefined && !processIsAlive(pid);
}
