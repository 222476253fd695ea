import { StratumError } from '../errors.js';

/**
 * Byte sizes, read and written one way everywhere. Reading follows Docker's `units.RAMInBytes`,
 * which `--shm-size`, `docker builder prune --keep-storage` and buildx use: a number with an
 * optional unit b, k, m, g, t or p (case-insensitive, an optional trailing `b` or `ib`), the units
 * binary (1k = 1024). Writing follows Docker's `units.HumanSize`, as `docker images` prints sizes:
 * decimal units (1 kB = 1000 B).
 */
const UNITS = ['b', 'k', 'm', 'g', 't', 'p'] as const;

/** `64m`, `1.5GiB`, `300k`, `4096`: bytes, or undefined when the text is not a size. */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([bkmgtp])(?:i?b)?)?$/i.exec(text.trim());
  if (match === null) return undefined;
  const power = UNITS.indexOf((match[2] ?? 'b').toLowerCase() as (typeof UNITS)[number]);
  return Math.floor(Number(match[1]) * 1024 ** power);
}

/** A flag's size above zero, or a usage error naming the flag. */
export function requireByteSize(flag: string, value: string): number {
  const bytes = parseByteSize(value);
  if (bytes === undefined)
    throw new StratumError('USAGE', `${flag} ${value}: expected a size such as 64m or 1g`);
  if (bytes <= 0) throw new StratumError('USAGE', `${flag} ${value}: must be more than 0`);
  return bytes;
}

/** `512 B`, `1.5 kB`, `340 MB`: three significant figures at most, decimal units. */
export function humanSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
