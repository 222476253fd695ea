import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lexWord } from '../../src/parser/shell-lex.js';
import { requireCorpus } from '../helpers/corpora.js';
import { buildkitShell } from './corpus.js';

const present = requireCorpus('buildkit', 'frontend', 'dockerfile', 'shell');

/** Go's strings.TrimSpace for the table fields (ASCII blanks are all these files use). */
const trim = (s: string): string => s.replace(/^[\s]+|[\s]+$/g, '');

describe.skipIf(!present)('buildkit shell/envVarTest: ProcessWord on every Linux line', () => {
  const env = new Map([
    ['PWD', '/home'],
    ['SHELL', 'bash'],
    ['KOREAN', '한국어'],
    ['NULL', ''],
  ]);
  const lines = present ? readFileSync(join(buildkitShell, 'envVarTest'), 'utf8').split('\n') : [];
  const cases: { platform: string; input: string; expected: string; line: number }[] = [];
  lines.forEach((line, i) => {
    if (line.startsWith('#') || trim(line) === '') return;
    const parts = line.split('|');
    if (parts.length !== 3) throw new Error(`envVarTest:${i + 1}: expected 3 fields`);
    cases.push({ platform: trim(parts[0]!), input: trim(parts[1]!), expected: trim(parts[2]!), line: i + 1 });
  });
  const windowsOnly = cases.filter((c) => c.platform === 'W');
  const linux = cases.filter((c) => c.platform !== 'W');

  it('skips only the Windows-only lines (2 of them)', () => {
    expect(windowsOnly).toHaveLength(2);
    expect(linux.length + windowsOnly.length).toBe(cases.length);
    console.log(`envVarTest: ${linux.length} Linux cases, ${windowsOnly.length} Windows-only skipped`);
  });
  for (const c of linux) {
    it(`line ${c.line}: ${c.input}`, () => {
      const result = lexWord(c.input, env);
      if (c.expected === 'error') {
        expect(result.ok).toBe(false);
      } else {
        expect(result).toMatchObject({ ok: true, value: c.expected });
      }
    });
  }
});

describe.skipIf(!present)('buildkit shell/wordsTest: ProcessWords with the cumulative ENV lines', () => {
  const lines = present ? readFileSync(join(buildkitShell, 'wordsTest'), 'utf8').split('\n') : [];
  const env = new Map<string, string>();
  const cases: { input: string; expected: string[] | 'error'; env: Map<string, string>; line: number }[] = [];
  lines.forEach((line, i) => {
    if (line.startsWith('#') || line === '') return;
    if (line.startsWith('ENV ')) {
      const entry = line.slice(3).replace(/^ +/, '');
      const eq = entry.indexOf('=');
      env.set(entry.slice(0, eq), entry.slice(eq + 1));
      return;
    }
    const parts = line.split('|');
    if (parts.length !== 2) throw new Error(`wordsTest:${i + 1}: expected 2 fields`);
    const expected = parts[1]!.replace(/^ +/, '');
    cases.push({
      input: trim(parts[0]!),
      expected: expected === 'error' ? 'error' : expected.split(','),
      env: new Map(env),
      line: i + 1,
    });
  });
  it('reads every case', () => {
    expect(cases.length).toBe(24);
  });
  for (const c of cases) {
    it(`line ${c.line}: ${c.input}`, () => {
      const result = lexWord(c.input, c.env);
      if (c.expected === 'error') expect(result.ok).toBe(false);
      else expect(result).toMatchObject({ ok: true, words: c.expected });
    });
  }
});
