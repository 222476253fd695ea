import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfile, parseDockerfileAst } from '../../src/parser/parse.js';
import { requireCorpus } from '../helpers/corpora.js';
import { buildkitParser } from './corpus.js';
import { dumpAst } from './dump.js';

const testfiles = join(buildkitParser, 'testfiles');
const negative = join(buildkitParser, 'testfiles-negative');
const present = requireCorpus('buildkit', 'frontend', 'dockerfile', 'parser');

describe.skipIf(!present)(
  'buildkit parser/testfiles: the AST dump equals BuildKit result byte for byte',
  () => {
    const cases = present ? readdirSync(testfiles).sort() : [];
    it('has the 33 upstream cases', () => {
      expect(cases).toHaveLength(33);
    });
    for (const name of cases) {
      it(name, () => {
        const result = parseDockerfileAst(readFileSync(join(testfiles, name, 'Dockerfile')));
        expect(result.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
        expect(dumpAst(result.nodes)).toBe(readFileSync(join(testfiles, name, 'result'), 'utf8'));
      });
    }
  },
);

describe.skipIf(!present)('buildkit parser/testfiles-negative: each fails with a located error', () => {
  const expected: Record<string, string> = {
    empty_dockerfile: 'file with no instructions',
    only_comments: 'file with no instructions',
    env_no_value: 'ENV must have two arguments',
    'shykes-nested-json': 'when using JSON array syntax, arrays must be comprised of strings only',
  };
  const cases = present ? readdirSync(negative).sort() : [];
  it('covers every upstream negative case', () => {
    expect(cases).toEqual(Object.keys(expected).sort());
  });
  for (const name of cases) {
    it(name, () => {
      const source = readFileSync(join(negative, name, 'Dockerfile'));
      for (const result of [parseDockerfileAst(source), parseDockerfile(source)]) {
        expect(result.ok).toBe(false);
        const errors = result.diagnostics.filter((d) => d.severity === 'error');
        expect(errors).toHaveLength(1);
        expect(errors[0]!.message).toBe(expected[name]);
        expect(errors[0]!.line).toBeGreaterThanOrEqual(1);
        expect(errors[0]!.column).toBeGreaterThanOrEqual(1);
      }
    });
  }
  it('env_no_value points at the ENV line', () => {
    const result = parseDockerfile(readFileSync(join(negative, 'env_no_value', 'Dockerfile')));
    expect(result.diagnostics[0]).toMatchObject({ line: 3, column: 5 });
  });
});

describe.skipIf(!present)('buildkit parser/testfile-line: instruction line ranges', () => {
  it('reports [5,5], [11,12], [17,31]', () => {
    const result = parseDockerfileAst(readFileSync(join(buildkitParser, 'testfile-line', 'Dockerfile')));
    expect(result.ok).toBe(true);
    expect(result.nodes.map((n) => [n.location.line, n.location.endLine])).toEqual([
      [5, 5],
      [11, 12],
      [17, 31],
    ]);
  });
});
