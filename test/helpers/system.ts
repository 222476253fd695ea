import { execFileSync } from 'node:child_process';

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
