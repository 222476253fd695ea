import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDockerfileAst, parseDockerfile } from '../../src/parser/parse.js';
import { requireCorpus } from '../helpers/corpora.js';
import { corpora } from './corpus.js';

/**
 * imagebuilder's heredoc case prints each heredoc as (Name-Content-Fd-Expand-Chomp) with the
 * content starting with a newline and without the final one; BuildKit's content keeps every
 * line ending. Convert and compare.
 */
describe('heredocs (imagebuilder parser/testfiles/heredoc)', () => {
  const dir = join(corpora, 'imagebuilder', 'dockerfile', 'parser', 'testfiles', 'heredoc');
  it.skipIf(!requireCorpus('imagebuilder'))('matches every heredoc name, body, fd, expand and chomp', () => {
    const expected = [
      ...readFileSync(join(dir, 'result'), 'utf8').matchAll(
        /\(([^()-]+)-\n([\s\S]*?)-(\d+)-(true|false)-(true|false)\)/g,
      ),
    ].map((m) => ({
      name: m[1],
      content: `${m[2] ?? ''}\n`,
      fileDescriptor: Number(m[3]),
      expand: m[4] === 'true',
      chomp: m[5] === 'true',
    }));
    const result = parseDockerfileAst(readFileSync(join(dir, 'Dockerfile')));
    expect(result.ok).toBe(true);
    expect(result.nodes.flatMap((n) => n.heredocs)).toEqual(expected);
    expect(expected.length).toBe(22);
  });

  it('RUN <<-EOF strips tabs; quoted names turn expansion off; COPY takes heredocs as sources', () => {
    const result = parseDockerfile(
      'FROM a\nRUN <<-EOF bash\n\techo $HOME\n\tEOF\nCOPY <<"A" <<B /dst/\n$x\nA\n$y\nB\nRUN true\n',
    );
    expect(result.ok).toBe(true);
    const [run, copy, last] = result.stages[0]!.instructions;
    expect(run).toMatchObject({
      heredocs: [{ name: 'EOF', content: 'echo $HOME\n', chomp: true, expand: true }],
      location: { line: 2, endLine: 4 },
    });
    expect(copy).toMatchObject({
      sources: [],
      destination: '/dst/',
      inlineSources: [
        { path: 'A', content: '$x\n', expand: false },
        { path: 'B', content: '$y\n', expand: true },
      ],
    });
    expect(last).toMatchObject({ kind: 'run', location: { line: 10 } });
  });

  it('a heredoc cannot be a COPY destination', () => {
    const result = parseDockerfile('FROM a\nCOPY x <<EOF\nEOF\n');
    expect(result.diagnostics[0]!.message).toBe('COPY cannot accept a heredoc as a destination');
  });
});
