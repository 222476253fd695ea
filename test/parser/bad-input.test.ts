import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../src/parser/parse.js';

function firstError(source: string | Uint8Array) {
  const result = parseDockerfile(source);
  expect(result.ok).toBe(false);
  return result.diagnostics.find((d) => d.severity === 'error')!;
}

describe('bad input gives a located diagnostic, never an exception', () => {
  it('an empty file', () => {
    expect(firstError('')).toMatchObject({ line: 1, column: 1, message: 'file with no instructions' });
  });
  it('a binary file (NUL byte)', () => {
    const bytes = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x0a, 0x00]);
    expect(firstError(bytes)).toMatchObject({
      line: 1,
      column: 8,
      message: expect.stringMatching(/binary/) as unknown,
    });
  });
  it('a 10 MB line', () => {
    const error = firstError(`FROM a\nRUN echo ${'x'.repeat(10 * 1024 * 1024)}\n`);
    expect(error).toMatchObject({
      line: 2,
      message: 'dockerfile line greater than max allowed size of 65535',
    });
  });
  it('an unterminated heredoc', () => {
    expect(firstError('FROM a\nRUN <<EOF\necho hi\n')).toMatchObject({
      line: 2,
      column: 1,
      message: 'unterminated heredoc "EOF"',
    });
  });
  it('an unterminated quote in a flag value still parses as BuildKit does, then fails in the mount', () => {
    expect(firstError('FROM a\nRUN --mount="type=cache true').message).toMatch(/^--mount=/);
  });
  it('an unterminated quote in an expansion fails at expansion time', async () => {
    const { expandWord } = await import('../../src/parser/index.js');
    expect(() => expandWord('"abc', () => undefined, { where: 'Dockerfile:3' })).toThrow(
      'Dockerfile:3: failed to process "\\"abc": unexpected end of statement while looking for matching double-quote',
    );
  });
  it('an unknown instruction suggests the closest one', () => {
    expect(firstError('FROM a\nWORKDRI /x')).toMatchObject({
      line: 2,
      column: 1,
      message: 'unknown instruction "WORKDRI" (did you mean "WORKDIR"?)',
      suggestion: 'WORKDIR',
    });
  });
  it('an instruction before FROM', () => {
    expect(firstError('RUN true\nFROM a')).toMatchObject({
      line: 1,
      message: expect.stringMatching(/before the first FROM/) as unknown,
    });
  });
  it('a duplicate or invalid directive', () => {
    expect(firstError('# escape=x\nFROM a')).toMatchObject({
      line: 1,
      message: "invalid escape token 'x' does not match ` or \\",
    });
    expect(firstError('# syntax=a\n# syntax=b\nFROM a')).toMatchObject({
      line: 2,
      message: 'only one syntax parser directive can be used',
    });
  });
  it('several errors are all reported', () => {
    const result = parseDockerfile('FROM a\nRUNN x\nCOPY a\nUSER\n');
    expect(result.diagnostics.filter((d) => d.severity === 'error').map((d) => d.line)).toEqual([2, 3, 4]);
  });
});
