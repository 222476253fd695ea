import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withBooleanFlagValues } from '../../src/cli/build.js';
import { StratumError } from '../../src/errors.js';
import { isValidImageName, parseImageReference } from '../../src/oci/reference.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** Issue 26's small CLI items, through the CLI in dist/: a closed stdout, buildx's `--pull=false`, `-t UPPER/x`. */
describe('the CLI with a closed stdout, buildx boolean flags and upper-case names', () => {
  let dir: string;
  let ctx: string;
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    STRATUM_DATA_DIR: join(dir, 'data'),
    STRATUM_CACHE_DIR: join(dir, 'cache'),
  });
  const run = (args: readonly string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [BIN, ...args], { env: env(), encoding: 'utf8', timeout: 120_000 });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-i26-cli-'));
    ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY Dockerfile /d\n');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  for (const args of [['cache', 'ls'], ['images'], ['images', '--json']]) {
    it(`stratum ${args.join(' ')} | (a reader that has gone): no stack trace, ends as SIGPIPE would (141)`, async () => {
      const child = spawn(process.execPath, [BIN, ...args], {
        env: env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // The reader goes before the command writes its first line, as `head -1` does after one.
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const status = await new Promise<number | null>((done) => child.once('close', done));
      expect(stderr).toBe('');
      expect(status).toBe(141);
    });
  }

  it('build takes --pull=false and --pull=true as buildx does; another value is a usage error; --help says so', () => {
    for (const flag of ['--pull=false', '--pull=true', '--pull', '--pull=0']) {
      const built = run(['build', flag, ctx, '--progress', 'quiet', '-t', 'pulled:1']);
      expect(built.status, `${flag}: ${built.stderr}`).toBe(0);
    }
    const bad = run(['build', '--pull=maybe', ctx]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('stratum: --pull=maybe: expected --pull=true or --pull=false\n');
    expect(run(['build', '--help']).stdout).toMatch(/--pull=true\|false/);
    expect(withBooleanFlagValues(['--push=1', '--no-cache=false', 'ctx', '--', '--pull=x'])).toEqual([
      '--push',
      'ctx',
      '--',
      '--pull=x',
    ]);
  });

  it('-t UPPER/x:1 is refused as Docker refuses it, one line naming the reference, exit 2, nothing stored', () => {
    const refused = run(['build', ctx, '-t', 'UPPER/x:1', '--progress', 'quiet']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toBe(
      'stratum: invalid image reference "UPPER/x:1": repository names must be lowercase\n',
    );
    expect(run(['images', '-q']).stdout).not.toMatch(/UPPER|upper/);
    expect(() => parseImageReference('UPPER/x:1')).toThrow(StratumError);
    expect(isValidImageName('Team/app')).toBe(false);
    // A registry host may have capitals (it has a dot or a port); localhost is a host.
    expect(isValidImageName('Registry.Example:5000/team/app:1')).toBe(true);
    expect(isValidImageName('localhost/app')).toBe(true);
  });
});
