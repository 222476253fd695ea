import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * bin/stratum.js exits as soon as only stdout and stderr are left (exitIfIdle), without the
 * empty event loop's teardown. Nothing written may be lost on the way: a reader that is slow
 * to take a pipe's contents (several pipe buffers of them) still gets every line and the result.
 */
describe.skipIf(!isRoot)('the way out of the CLI', () => {
  let sandbox: BuildSandbox;
  beforeAll(() => {
    sandbox = buildSandbox();
  });
  afterAll(() => {
    sandbox.cleanup();
  });

  it('a slow reader of stdout and stderr gets all of both, and the exit status', async () => {
    // ~500 KB of step output on stderr (plain progress), the digest on stdout.
    const ctx = sandbox.context('slow-reader', {
      Dockerfile: `FROM ${sandbox.baseRef}\nRUN i=0; while [ $i -lt 8000 ]; do echo "line $i of the step's output, padded to about fifty bytes"; i=$((i+1)); done\n`,
    });
    const child = spawn(process.execPath, [BIN, 'build', ctx, '--network', 'none', '--progress', 'plain'], {
      env: { ...process.env, STRATUM_CACHE_DIR: sandbox.cacheDir, STRATUM_DATA_DIR: sandbox.dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    // Nothing is read for the first second: the pipes fill and the CLI's writes wait.
    child.stdout.pause();
    child.stderr.pause();
    child.stdout.on('data', (chunk: Buffer) => chunks.stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => chunks.stderr.push(chunk));
    const code = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    child.stdout.resume();
    child.stderr.resume();
    expect(await code).toBe(0);
    const stderr = Buffer.concat(chunks.stderr).toString('utf8');
    const stdout = Buffer.concat(chunks.stdout).toString('utf8');
    const lines = stderr.split('\n').filter((line) => / \| line \d+ of the step's output/.test(line));
    expect(lines).toHaveLength(8000);
    expect(lines.at(-1)).toContain('line 7999 ');
    expect(stderr).toMatch(/the image was built but not saved\n$/);
    expect(stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
  }, 120_000);
});
