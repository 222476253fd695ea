import { describe, expect, it } from 'vitest';
import { goDuration, goRune, healthcheckCreatedBy } from '../../src/executor/history.js';

// Strings measured from Docker 20.10 (the same in the classic builder and BuildKit).
describe('HEALTHCHECK history text in the form Docker writes', () => {
  it.each([
    [
      { Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 5e9, Timeout: 3e9, Retries: 2 },
      `HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "5s" "3s" "0s" '\\x02'}`,
    ],
    [
      { Test: ['CMD', '/bin/true', 'x y'] },
      `HEALTHCHECK &{["CMD" "/bin/true" "x y"] "0s" "0s" "0s" '\\x00'}`,
    ],
    [{ Test: ['NONE'] }, `HEALTHCHECK &{["NONE"] "0s" "0s" "0s" '\\x00'}`],
    [
      { Test: ['CMD-SHELL', 'true'], Interval: 90e9, Timeout: 1.5e9, StartPeriod: 7200e9, Retries: 10 },
      `HEALTHCHECK &{["CMD-SHELL" "true"] "1m30s" "1.5s" "2h0m0s" '\\n'}`,
    ],
    [
      { Test: ['CMD', 'a"b', 'c\\d'], Interval: 3661.5e9, Timeout: 2.5e6, Retries: 65 },
      `HEALTHCHECK &{["CMD" "a\\"b" "c\\\\d"] "1h1m1.5s" "2.5ms" "0s" 'A'}`,
    ],
  ])('%j', (health, expected) => {
    expect(healthcheckCreatedBy(health)).toBe(expected);
  });

  it("prints durations and rune literals as Go's fmt does", () => {
    expect(goDuration(0)).toBe('0s');
    expect(goDuration(7)).toBe('7ns');
    expect(goDuration(1500)).toBe('1.5µs');
    expect(goDuration(250e6)).toBe('250ms');
    expect(goDuration(3600e9)).toBe('1h0m0s');
    expect(goDuration(61e9)).toBe('1m1s');
    expect(goRune(0)).toBe(`'\\x00'`);
    expect(goRune(39)).toBe(`'\\''`);
    expect(goRune(127)).toBe(`'\\x7f'`);
    expect(goRune(233)).toBe(`'é'`);
  });
});
