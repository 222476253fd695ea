import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  compileIgnore,
  isIgnored,
  loadDockerignore,
  parseDockerignore,
  planCopy,
} from '../../../src/executor/context/index.js';
import { StratumError } from '../../../src/errors.js';
import { build, tempDir } from './helpers.js';

function ignored(patterns: string[], path: string): boolean {
  return isIgnored(compileIgnore(patterns), path);
}

// moby/patternmatcher TestMatches (MatchesOrParentMatches): true unless the case says fail.
const mobyMatches: [string, string, boolean][] = [
  ['**', 'file', true],
  ['**', 'file/', true],
  ['**/', 'file', true],
  ['**/', 'file/', true],
  ['**', '/', true],
  ['**/', '/', true],
  ['**', 'dir/file', true],
  ['**/', 'dir/file', true],
  ['**', 'dir/file/', true],
  ['**/', 'dir/file/', true],
  ['**/**', 'dir/file', true],
  ['**/**', 'dir/file/', true],
  ['dir/**', 'dir/file', true],
  ['dir/**', 'dir/file/', true],
  ['dir/**', 'dir/dir2/file', true],
  ['dir/**', 'dir/dir2/file/', true],
  ['**/dir', 'dir', true],
  ['**/dir', 'dir/file', true],
  ['**/dir2/*', 'dir/dir2/file', true],
  ['**/dir2/*', 'dir/dir2/file/', true],
  ['**/dir2/**', 'dir/dir2/dir3/file', true],
  ['**/dir2/**', 'dir/dir2/dir3/file/', true],
  ['**file', 'file', true],
  ['**file', 'dir/file', true],
  ['**/file', 'dir/file', true],
  ['**file', 'dir/dir/file', true],
  ['**/file', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file', true],
  ['**/file*', 'dir/dir/file.txt', true],
  ['**/file*txt', 'dir/dir/file.txt', true],
  ['**/file*.txt', 'dir/dir/file.txt', true],
  ['**/file*.txt*', 'dir/dir/file.txt', true],
  ['**/**/*.txt', 'dir/dir/file.txt', true],
  ['**/**/*.txt2', 'dir/dir/file.txt', false],
  ['**/*.txt', 'file.txt', true],
  ['**/**/*.txt', 'file.txt', true],
  ['a**/*.txt', 'a/file.txt', true],
  ['a**/*.txt', 'a/dir/file.txt', true],
  ['a**/*.txt', 'a/dir/dir/file.txt', true],
  ['a/*.txt', 'a/dir/file.txt', false],
  ['a/*.txt', 'a/file.txt', true],
  ['a/*.txt**', 'a/file.txt', true],
  ['a[b-d]e', 'ae', false],
  ['a[b-d]e', 'ace', true],
  ['a[b-d]e', 'aae', false],
  ['a[^b-d]e', 'aze', true],
  ['.*', '.foo', true],
  ['.*', 'foo', false],
  ['abc.def', 'abcdef', false],
  ['abc.def', 'abc.def', true],
  ['abc.def', 'abcZdef', false],
  ['abc?def', 'abcZdef', true],
  ['abc?def', 'abcdef', false],
  ['**/foo/bar', 'foo/bar', true],
  ['**/foo/bar', 'dir/foo/bar', true],
  ['**/foo/bar', 'dir/dir2/foo/bar', true],
  ['abc/**', 'abc', false],
  ['abc/**', 'abc/def', true],
  ['abc/**', 'abc/def/ghi', true],
  ['**/.foo', '.foo', true],
  ['**/.foo', 'bar.foo', false],
  ['a(b)c/def', 'a(b)c/def', true],
  ['a(b)c/def', 'a(b)c/xyz', false],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', true],
  [
    'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl',
    'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl',
    true,
  ],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', true],
  ['a\\\\', 'a\\', true],
  ['a\\*b', 'a*b', true],
  // filepath.Match cases as moby runs them through its matcher (a parent dir counts).
  ['a*', 'ab/c', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['ab[^e-g]', 'abc', true],
  ['[\\]a]', ']', true],
  ['*x', 'xxx', true],
  // Characters a RegExp would treat specially, next to wildcards (they once crashed the matcher).
  ['file-*.txt', 'file-1.txt', true],
  ['file-*.txt', 'file.txt', false],
  ['a+b(?).txt', 'a+b(1).txt', true],
  ['{a,b}*', '{a,b}.txt', true],
  ['p|*', 'p|q', true],
  ['^*$', '^c$', true],
  ['**/x-*', 'a/b/x-1', true],
  ['[[]x]-*', '[x]-1', true],
];

const mobyMulti: [string[], string, boolean][] = [
  [['**', '!util/docker/web'], 'util/docker/web/foo', false],
  [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', true],
  [
    ['**', '!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl'],
    'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl',
    false,
  ],
  [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', false],
  // moby's single-purpose tests
  [['*'], 'fileutils.go', true],
  [['*.go'], 'fileutils.go', true],
  [['!fileutils.go', '*.go'], 'fileutils.go', true],
  [['docs', '!docs/README.md'], 'docs/README.md', false],
  [['docs/', '!docs/README.md'], 'docs/README.md', false],
  [['docs/*', '!docs/README.md'], 'docs/README.md', false],
  [['*.go', '!fileutils.go'], 'fileutils.go', false],
  [['*.go'], '.', false],
  [[], '/any/path/there', false],
];

describe('.dockerignore matching follows moby/patternmatcher', () => {
  it.each(mobyMatches)('pattern %j against %j → %s', (pattern, path, expected) => {
    expect(ignored([pattern], path)).toBe(expected);
  });

  it.each(mobyMulti)('patterns %j against %j → %s (later patterns win)', (patterns, path, expected) => {
    expect(ignored(patterns, path)).toBe(expected);
  });

  it.each(['[', '[]a]', '[x-]', '\\', 'a['])(
    'malformed pattern %j is a PARSE error naming the file',
    (pattern) => {
      expect(() => compileIgnore([pattern], 'ctx/.dockerignore')).toThrow(/ctx\/\.dockerignore: bad pattern/);
    },
  );

  it('a lone "!" is an illegal exclusion pattern', () => {
    expect(() => compileIgnore(['!'])).toThrow(StratumError);
  });
});

describe('.dockerignore file syntax (BuildKit ignorefile.ReadAll)', () => {
  it('drops comments, blank lines and a BOM; trims; strips a leading / and ./; cleans paths', () => {
    const text =
      '\uFEFF# comment\n\n  node_modules  \n/build\n./tmp/../cache//x\n! /keep/me\n  # not a comment after spaces\r\n';
    expect(parseDockerignore(text)).toEqual([
      'node_modules',
      'build',
      'cache/x',
      '!keep/me',
      '# not a comment after spaces',
    ]);
  });

  it('exceptions re-include below an excluded directory', () => {
    const m = compileIgnore(parseDockerignore('docs\n!docs/README.md\n'));
    expect(isIgnored(m, 'docs')).toBe(true);
    expect(isIgnored(m, 'docs/other.md')).toBe(true);
    expect(isIgnored(m, 'docs/README.md')).toBe(false);
    expect(m.hasExceptions).toBe(true);
  });
});

describe('.dockerignore file choice (BuildKit)', () => {
  it('<Dockerfile>.dockerignore next to the Dockerfile wins over CONTEXT/.dockerignore', async () => {
    const ctx = await tempDir();
    await build(ctx, {
      '.dockerignore': 'a\n',
      'build/app.Dockerfile': 'FROM scratch\n',
      'build/app.Dockerfile.dockerignore': 'b\n',
    });
    const chosen = await loadDockerignore(ctx, join(ctx, 'build/app.Dockerfile'));
    expect(chosen.path).toBe(join(ctx, 'build/app.Dockerfile.dockerignore'));
    expect(chosen.matcher.patterns.map((p) => p.pattern)).toEqual(['b']);
  });

  it('falls back to CONTEXT/.dockerignore, and to nothing', async () => {
    const ctx = await tempDir();
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
    expect((await loadDockerignore(ctx, join(ctx, 'Dockerfile'))).path).toBeUndefined();
    await writeFile(join(ctx, '.dockerignore'), '*.log\n');
    const chosen = await loadDockerignore(ctx, join(ctx, 'Dockerfile'));
    expect(chosen.path).toBe(join(ctx, '.dockerignore'));
    expect(isIgnored(chosen.matcher, 'x.log')).toBe(true);
  });
});

describe('.dockerignore applied to the build context', () => {
  async function contextWith(ignore: string, tree: Record<string, string>) {
    const ctx = await tempDir();
    await build(ctx, { ...tree, '.dockerignore': ignore });
    const { matcher } = await loadDockerignore(ctx);
    return { ctx, root: { kind: 'context' as const, dir: ctx, ignore: matcher } };
  }

  it('COPY . skips excluded paths and walks an excluded directory for a re-included child', async () => {
    const { root } = await contextWith('docs\n!docs/README.md\n*.log\n**/secret\n.dockerignore\n', {
      'docs/README.md': 'r',
      'docs/internal.md': 'i',
      'app.log': 'l',
      'src/a.js': 'a',
      'src/deep/secret': 's',
    });
    const plan = await planCopy({ sources: ['.'], dest: '/app/', root });
    expect(plan.entries.map((e) => e.destRelPath)).toEqual([
      'docs',
      'docs/README.md',
      'src',
      'src/a.js',
      'src/deep',
    ]);
  });

  it('an excluded directory without exceptions is not walked at all', async () => {
    const { root, ctx } = await contextWith('node_modules\n', {
      'node_modules/x/index.js': 'x',
      'index.js': 'i',
    });
    await mkdir(join(ctx, 'node_modules/unreadable'), { mode: 0o000 });
    const plan = await planCopy({ sources: ['.'], dest: '/app/', root });
    expect(plan.entries.map((e) => e.destRelPath)).toEqual(['.dockerignore', 'index.js']);
  });

  it("naming an excluded file as a source is a NOT_FOUND error with the classic builder's message", async () => {
    const { root } = await contextWith('secret.txt\n', { 'secret.txt': 's' });
    await expect(planCopy({ sources: ['secret.txt'], dest: '/x', root })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message:
        'COPY failed: file not found in build context or excluded by .dockerignore: stat secret.txt: file does not exist',
    });
  });

  it('wildcards do not match excluded files', async () => {
    const { root } = await contextWith('b.txt\n', { 'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c' });
    const plan = await planCopy({ sources: ['*.txt'], dest: '/d/', root });
    expect(plan.entries.map((e) => e.destRelPath)).toEqual(['a.txt', 'c.txt']);
  });
});

/**
 * Exceptions below excluded directories, as current BuildKit sends the context (tonistiigi/fsutil
 * filter.go: an excluded directory is skipped only when no exception could match below it; since
 * fsutil d7eeb96, BuildKit v0.10 / Docker 23, an exception with wildcards always descends, and
 * each path is then decided by moby/patternmatcher, the last matching pattern winning). Docker
 * 20.10's builders (BuildKit 0.8's fsutil, and the classic builder) skipped the directory unless
 * an exception named it as a literal prefix: for `keep/` + `!**\/wanted.txt` they leave
 * keep/deep/wanted.txt out, current BuildKit and stratum bring it in.
 */
describe('.dockerignore exceptions, table (current BuildKit: fsutil filter + patternmatcher)', () => {
  const tree = {
    'a.txt': 'a',
    'keep/x.txt': 'x',
    'keep/deep/wanted.txt': 'w',
    'keep/deep/other.txt': 'o',
    'keep/sub/x': 'x',
    'keep/sub/y': 'y',
    'top/wanted.txt': 't',
    'docs/README.md': 'r',
    'docs/api/README.md': 'r',
    'docs/api/ref.md': 'r',
  };
  const cases: [ignore: string, expected: string[]][] = [
    [
      'keep/\n!**/wanted.txt\n.dockerignore',
      [
        'a.txt',
        'docs',
        'docs/README.md',
        'docs/api',
        'docs/api/README.md',
        'docs/api/ref.md',
        'keep',
        'keep/deep',
        'keep/deep/wanted.txt',
        'top',
        'top/wanted.txt',
      ],
    ],
    [
      '*\n!keep',
      [
        'keep',
        'keep/deep',
        'keep/deep/other.txt',
        'keep/deep/wanted.txt',
        'keep/sub',
        'keep/sub/x',
        'keep/sub/y',
        'keep/x.txt',
      ],
    ],
    ['*\n!keep/sub\nkeep/sub/x', ['keep', 'keep/sub', 'keep/sub/y']],
    // `**/` matches no directory too: docs/**/README.md is also docs/README.md
    [
      '**/*.md\n!docs/**/README.md\n*.txt\n.dockerignore\nkeep\ntop',
      ['docs', 'docs/README.md', 'docs/api', 'docs/api/README.md'],
    ],
    [
      'docs\n!docs/README.md\n!docs/api\ndocs/api/ref.md\n*\n!docs',
      ['docs', 'docs/README.md', 'docs/api', 'docs/api/README.md', 'docs/api/ref.md'],
    ],
    ['keep/*\n!keep/s*\nkeep/sub/y\n.dockerignore\ndocs\ntop\na.txt', ['keep', 'keep/sub', 'keep/sub/x']],
    ['!a.txt\n*', []],
  ];
  for (const [ignore, expected] of cases) {
    it(`${JSON.stringify(ignore)} selects ${expected.length} paths`, async () => {
      const ctx = await tempDir();
      await build(ctx, { ...tree, '.dockerignore': `${ignore}\n` });
      const { matcher } = await loadDockerignore(ctx);
      const root = { kind: 'context' as const, dir: ctx, ignore: matcher };
      const plan = await planCopy({ sources: ['.'], dest: '/c/', root });
      expect(plan.entries.map((entry) => entry.destRelPath).sort()).toEqual([...expected].sort());
    });
  }
});
