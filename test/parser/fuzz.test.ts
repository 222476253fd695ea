import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../src/parser/parse.js';
import { lexWord } from '../../src/parser/shell-lex.js';
import type { Diagnostic } from '../../src/parser/types.js';
import { requireCorpus } from '../helpers/corpora.js';
import { corpora, dockerfilesUnder } from './corpus.js';

/** mulberry32: a small seeded PRNG, so every run mutates the same way. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const tokens = [
  '\\',
  '\\\n',
  '`',
  '\n',
  '\r\n',
  '\r',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  '$',
  '${',
  ':-',
  ':?',
  '#',
  '##',
  '%',
  '//',
  '<<EOF',
  '<<-EOF',
  'EOF\n',
  '\t',
  ' ',
  '--mount=',
  'type=cache,target=/x',
  '--from=',
  '--',
  'ONBUILD ',
  'FROM ',
  'RUN ',
  'COPY ',
  'HEALTHCHECK ',
  'CMD ',
  'ENV ',
  'ARG ',
  '=',
  ',',
  '\0',
  '\ufeff',
  '♥',
  '\ud800',
  '# escape=`\n',
];

const fuzzCorpora = ['buildkit', 'realworld', 'kaniko', 'imagebuilder'];
const present = fuzzCorpora.every((dir) => requireCorpus(dir));

describe.skipIf(!present)('fuzz: mutated corpus files yield only typed diagnostics', () => {
  const files = (present ? fuzzCorpora : [])
    .flatMap((dir) => [...dockerfilesUnder(join(corpora, dir))])
    .map((path) => readFileSync(path, 'utf8'))
    .filter((text) => text.length < 20_000);

  it('10,000 seeded mutations parse without an exception', () => {
    const random = prng(0x5eed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const inputs = 10_000;
    let errors = 0;
    for (let n = 0; n < inputs; n++) {
      let text = pick(files);
      const edits = 1 + Math.floor(random() * 4);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * (text.length + 1));
        switch (Math.floor(random() * 5)) {
          case 0:
            text = text.slice(0, at) + pick(tokens) + text.slice(at);
            break;
          case 1:
            text = text.slice(0, at) + text.slice(at + Math.floor(random() * 40));
            break;
          case 2: {
            const len = Math.floor(random() * 80);
            text = text.slice(0, at) + text.slice(at, at + len) + text.slice(at);
            break;
          }
          case 3:
            text = text.slice(0, at);
            break;
          default:
            text = text.slice(0, at) + String.fromCharCode(Math.floor(random() * 0x3000)) + text.slice(at);
        }
      }
      const source = random() < 0.3 ? Buffer.from(text) : text;
      let result;
      try {
        result = parseDockerfile(source, { file: 'fuzz' });
      } catch (error) {
        throw new Error(`input ${n} threw: ${String(error)}\n${JSON.stringify(text.slice(0, 2000))}`);
      }
      for (const d of result.diagnostics) checkDiagnostic(d);
      expect(result.ok).toBe(!result.diagnostics.some((d) => d.severity === 'error'));
      if (!result.ok) errors++;
      // Expansion of every argument must return a value, never throw.
      for (const stage of result.stages) {
        for (const instruction of stage.instructions) {
          for (const arg of instruction.args.slice(0, 3)) {
            const lexed = lexWord(arg, (name) => (name.length % 2 === 0 ? 'v' : undefined));
            expect(typeof lexed.ok).toBe('boolean');
          }
        }
      }
    }
    console.log(`fuzz: ${inputs} inputs, ${errors} with error diagnostics`);
    expect(errors).toBeGreaterThan(0);
  });
});

function checkDiagnostic(d: Diagnostic): void {
  const severity: string = d.severity;
  if (
    (severity !== 'error' && severity !== 'warning') ||
    d.file !== 'fuzz' ||
    !Number.isInteger(d.line) ||
    d.line < 1 ||
    !Number.isInteger(d.column) ||
    d.column < 1 ||
    typeof d.message !== 'string' ||
    d.message === ''
  ) {
    throw new Error(`malformed diagnostic: ${JSON.stringify(d)}`);
  }
}
