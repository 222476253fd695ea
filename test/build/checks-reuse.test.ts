import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runChecks } from '../../src/build/checks.js';
import { parseDockerfile } from '../../src/parser/index.js';

/**
 * A build parses its Dockerfile three times and `build --watch` checks it at every save: the last
 * parse and the last checks are kept. What is kept must be what a fresh run gives, and anything
 * the result depends on (the text, the file name, build args, target, the ignore rules) must
 * give a fresh run.
 */
describe('the last parse and checks are kept, and only for the same inputs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-checks-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('the same text and name give the same parse; another text or name a fresh one', () => {
    const text = 'FROM busybox\nRUN true\n';
    const first = parseDockerfile(text, { file: 'a.Dockerfile' });
    expect(parseDockerfile(Buffer.from(text).toString('utf8'), { file: 'a.Dockerfile' })).toBe(first);
    const renamed = parseDockerfile(text, { file: 'b.Dockerfile' });
    expect(renamed).not.toBe(first);
    expect(renamed.file).toBe('b.Dockerfile');
    const other = parseDockerfile('FROM busybox\nRUN false\n', { file: 'b.Dockerfile' });
    expect(other.stages[0]!.instructions[0]).toMatchObject({ kind: 'run' });
    expect(JSON.stringify(other)).not.toBe(JSON.stringify(renamed));
  });

  it('checks follow the ignore file, the build args and the target', async () => {
    const text =
      'ARG BASE=busybox\nFROM $BASE AS one\nCOPY secret.txt /x/\nFROM $BASE AS two\nCOPY app /y/\n';
    const inputs = {
      dockerfile: text,
      file: 'Dockerfile',
      contextDir: dir,
      buildArgs: { BASE: 'busybox' } as Record<string, string>,
    };
    const rules = async (overrides: Partial<typeof inputs> & { target?: string } = {}): Promise<string[]> =>
      (await runChecks({ ...inputs, ...overrides }, true)).warnings.map((warning) => warning.message);
    expect(await rules()).toEqual([]);
    writeFileSync(join(dir, '.dockerignore'), 'secret*\n');
    expect(await rules()).toEqual(['Attempting to Copy file "secret.txt" that is excluded by .dockerignore']);
    writeFileSync(join(dir, '.dockerignore'), 'app\n');
    expect(await rules()).toEqual(['Attempting to Copy file "app" that is excluded by .dockerignore']);
    // --target two: the checks see stage two only.
    expect(await rules({ target: 'two' })).toEqual([
      'Attempting to Copy file "app" that is excluded by .dockerignore',
    ]);
    writeFileSync(join(dir, '.dockerignore'), 'secret*\n');
    expect(await rules({ target: 'two' })).toEqual([]);
    // A build arg the checks read: BUILDKIT_DOCKERFILE_CHECK skips a rule.
    expect(await rules()).toEqual(['Attempting to Copy file "secret.txt" that is excluded by .dockerignore']);
    expect(
      await rules({ buildArgs: { BASE: 'busybox', BUILDKIT_DOCKERFILE_CHECK: 'skip=CopyIgnoredFile' } }),
    ).toEqual([]);
  });
});
