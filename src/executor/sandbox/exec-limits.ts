import { StratumError } from '../../errors.js';
import type { SandboxSpec, Ulimit } from './types.js';

/**
 * The kernel refuses an exec whose argv and environment are too large (E2BIG): one string over
 * MAX_ARG_STRLEN (32 pages, 128 KiB), or all of them over a quarter of the stack limit (2 MiB
 * with the usual 8 MiB). Docker's builders fail there too ("argument list too long"); this says
 * which string is the largest, without printing it.
 */
export function tooLongForExec(spec: SandboxSpec): StratumError {
  const strings = [
    ...spec.argv.map((arg, index) => ({ what: `argument ${index}`, arg })),
    ...spec.env.map((arg) => ({ what: `variable ${arg.slice(0, Math.max(0, arg.indexOf('=')))}`, arg })),
  ];
  const bytes = (text: string): number => Buffer.byteLength(text) + 1;
  const total = strings.reduce((sum, { arg }) => sum + bytes(arg), 0);
  const largest = strings.reduce((a, b) => (bytes(b.arg) > bytes(a.arg) ? b : a));
  return new StratumError(
    'BUILD_FAILED',
    `RUN could not start: its command and environment are too large for exec (E2BIG; the kernel's limit is ${kib(MAX_ARG_STRLEN)} per argument or variable and about a quarter of the stack limit in all): the largest is ${largest.what}, ${kib(bytes(largest.arg))}, of ${kib(total)} in all`,
  );
}

/** Linux's MAX_ARG_STRLEN with 4 KiB pages. */
const MAX_ARG_STRLEN = 32 * 4096;

function kib(bytes: number): string {
  return `${Math.ceil(bytes / 1024)} KiB`;
}

/** `--ulimit`: prlimit (util-linux) sets the limits on itself and execs what follows, which inherits them. */
export function ulimitArgs(ulimits: readonly Ulimit[]): string[] {
  if (ulimits.length === 0) return [];
  return ['prlimit', ...ulimits.map((limit) => `--${limit.name}=${limit.soft}:${limit.hard}`), '--'];
}
