import { describe, expect, it } from 'vitest';
import { globMatch, GlobSyntaxError, hasWildcards } from '../../../src/executor/context/index.js';

// Go's filepath.Match table (as carried in moby/patternmatcher's tests).
const matchTests: [string, string, boolean | 'bad'][] = [
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', false],
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['a\\*b', 'a*b', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', 'x', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true],
  ['[\\-x]', '-', true],
  ['[\\-x]', 'a', false],
  ['[]a]', ']', 'bad'],
  ['[-]', '-', 'bad'],
  ['[x-]', 'x', 'bad'],
  ['[-x]', 'x', 'bad'],
  ['\\', 'a', 'bad'],
  ['[a-b-c]', 'a', 'bad'],
  ['[', 'a', 'bad'],
  ['[^', 'a', 'bad'],
  ['[^bc', 'a', 'bad'],
  ['a[', 'a', 'bad'],
  ['a[', 'ab', 'bad'],
  ['*x', 'xxx', true],
  // Every character a regular expression treats specially is itself in a pattern.
  ['file-*.txt', 'file-1.txt', true],
  ['file-*.txt', 'file1.txt', false],
  ['a+b(?).txt', 'a+b(1).txt', true],
  ['a+b(?).txt', 'aab(1).txt', false],
  ['{a,b}.txt', '{a,b}.txt', true],
  ['{a,b}.txt', 'a.txt', false],
  ['p|q.txt', 'p|q.txt', true],
  ['p|q.txt', 'p', false],
  ['^c$.txt', '^c$.txt', true],
  ['^c$.txt', 'c.txt', false],
  ['d.e.txt', 'd.e.txt', true],
  ['d.e.txt', 'dxe.txt', false],
  ['brace}.txt', 'brace}.txt', true],
  ['x{2}', 'xx', false],
  ['x{2}', 'x{2}', true],
  ['a/b', 'a/b', true],
  ['[[]x]', '[x]', true],
  ['[[]x]', 'x]', false],
  ['[-+.]*', '+a', 'bad'],
  ['[+.-]*', '+a', 'bad'],
  ['[+.]*', '+a', true],
  ['[\\-\\+]', '+', true],
  ['[\\-\\+]', ',', false],
  ['[\\-\\+]', '-', true],
  ['[\\-\\+]', '.', false],
  ['[!a-c]*', '!x', true],
  ['[!a-c]*', 'b', true],
  ['[!a-c]*', 'd', false],
  ['[^a-c]*', 'd', true],
  ['[^a-c]*', '^', true],
  ['[$^]', '$', true],
  ['[|(]', '(', true],
  ['\\(x\\)', '(x)', true],
  ['\\.', '.', true],
  ['\\.', 'x', false],
  ['*.*', 'a.b', true],
  ['*.*', 'ab', false],
  ['**', 'abc', true],
  ['**', 'a/b', false],
  ['a\\[b', 'a[b', true],
  ['*a*a*a*a*a*a*a*a*b', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', false],
];

describe("glob: Go's filepath.Match syntax for COPY wildcards", () => {
  it.each(matchTests)('Match(%j, %j) = %s', (pattern, name, expected) => {
    if (expected === 'bad') {
      expect(() => globMatch(pattern, name)).toThrow(GlobSyntaxError);
    } else {
      expect(globMatch(pattern, name)).toBe(expected);
    }
  });

  it('hasWildcards skips escaped characters', () => {
    expect(hasWildcards('*.txt')).toBe(true);
    expect(hasWildcards('file[0-9]')).toBe(true);
    expect(hasWildcards('a\\*b')).toBe(false);
    expect(hasWildcards('plain.txt')).toBe(false);
  });
});
