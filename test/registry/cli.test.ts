import { execFileSync } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { requireTool } from '../helpers/system.js';
import {
  makeTestLayout,
  noise,
  startRegistry,
  tempDir,
  type RunningRegistry,
  type TestImage,
} from './harness.js';

const enabled =
  requireTool('docker-registry', 'docker-registry') &&
  requireTool('skopeo', 'skopeo') &&
  requireTool('htpasswd', 'apache2-utils');

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    process.exitCode = undefined;
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
  }
}

describe.skipIf(!enabled)('stratum pull, push, login, logout', () => {
  let registry: RunningRegistry;
  let secured: RunningRegistry;
  let work: string;
  let image: TestImage;

  beforeAll(async () => {
    registry = await startRegistry();
    secured = await startRegistry({ htpasswd: { user: 'ci', password: 'cli-Pass-4431' } });
    work = await tempDir('push-cli');
    image = await makeTestLayout(join(work, 'layout'), [{ f: noise(10_000, 21) }]);
  });
  afterAll(async () => {
    await registry.stop();
    await secured.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('push oci:DIR:TAG docker://REF with --tag prints the digest; skopeo sees both tags', async () => {
    const result = await run([
      'push',
      `oci:${image.dir}:latest`,
      `docker://${registry.host}/cli/app:v1`,
      '--tag',
      'v2',
      '--chunk-size',
      '4k',
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${image.manifestDigest}\n`);
    expect(result.stderr).toContain(`${registry.host}/cli/app:v2 ${image.manifestDigest}`);
    // Each uploaded blob is reported with its bytes and the rate it went at.
    expect(result.stderr).toMatch(/^sha256:[0-9a-f]{12} uploaded \(\d+ bytes, [\d.]+ (MB|kB|B)\/s\)$/m);
    const inspect = execFileSync(
      'skopeo',
      ['inspect', '--tls-verify=false', `docker://${registry.host}/cli/app:v2`],
      { encoding: 'utf8' },
    );
    expect(inspect).toContain(image.manifestDigest);
  });

  it('pull REF oci:DIR:TAG writes the image to a layout', async () => {
    const out = join(work, 'pulled');
    const result = await run(['pull', `${registry.host}/cli/app:v1`, `oci:${out}:copy`, '-q']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${image.manifestDigest}\n`);
    expect(await readFile(join(out, 'index.json'), 'utf8')).toContain(image.manifestDigest);
  });

  it('pull without -q reports each blob with its bytes and rate', async () => {
    const result = await run([
      'pull',
      `${registry.host}/cli/app:v1`,
      `oci:${join(work, 'pulled-progress')}:copy`,
    ]);
    expect(result.code).toBe(0);
    for (const layer of image.manifest.layers) {
      expect(result.stderr).toMatch(
        new RegExp(
          `^${layer.digest.slice(7, 19)} fetched \\(${layer.size} bytes, [\\d.]+ (MB|kB|B)/s\\)$`,
          'm',
        ),
      );
    }
  });

  it('pulling a missing tag exits 1 with one line naming the reference and MANIFEST_UNKNOWN', async () => {
    const result = await run(['pull', `docker://${registry.host}/cli/app:missing`, `oci:${join(work, 'x')}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^stratum: docker://${registry.host.replace(/\./g, '\\.')}/cli/app:missing: fetching manifest: HTTP 404 MANIFEST_UNKNOWN[^\\n]*\\n$`,
      ),
    );
  });

  it('bad references and destinations are usage errors (exit 2) with the reason', async () => {
    const upper = await run(['pull', `${registry.host}/Cli/App:v1`, `oci:${join(work, 'y')}`]);
    expect(upper.code).toBe(2);
    expect(upper.stderr).toContain('repository name must be lowercase');
    const dest = await run(['push', `oci:${image.dir}:latest`, `${registry.host}/cli/app:v3`]);
    expect(dest.code).toBe(2);
    expect(dest.stderr).toContain('must be a registry reference: docker://NAME[:TAG]');
  });

  it('login refuses a wrong password (exit 1, no secret printed), accepts the right one (0600 file), logout removes it', async () => {
    const authfile = join(work, 'auth', 'config.json');
    const wrong = await run([
      'login',
      '-u',
      'ci',
      '-p',
      'wrong-Pass-9',
      '--authfile',
      authfile,
      secured.host,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('UNAUTHORIZED');
    expect(wrong.stderr + wrong.stdout).not.toContain('wrong-Pass-9');

    const right = await run([
      'login',
      '--username',
      'ci',
      '--password',
      'cli-Pass-4431',
      '--authfile',
      authfile,
      secured.host,
    ]);
    expect(right.code).toBe(0);
    expect(right.stdout).toContain('Login Succeeded');
    expect(right.stdout + right.stderr).not.toContain('cli-Pass-4431');
    expect((await stat(authfile)).mode & 0o777).toBe(0o600);
    // The directory it made for it is private too, as ~/.docker is.
    expect((await stat(join(work, 'auth'))).mode & 0o777).toBe(0o700);

    const push = await run([
      'push',
      `oci:${image.dir}:latest`,
      `docker://${secured.host}/cli/app:v1`,
      '--authfile',
      authfile,
      '-q',
    ]);
    expect(push.code).toBe(0);
    expect(push.stdout + push.stderr).not.toContain('cli-Pass-4431');

    const out = await run(['logout', '--authfile', authfile, secured.host]);
    expect(out.code).toBe(0);
    expect(out.stdout).toBe(`Removed login credentials for ${secured.host}\n`);
    expect(await readFile(authfile, 'utf8')).not.toContain(
      Buffer.from('ci:cli-Pass-4431').toString('base64'),
    );
    const denied = await run([
      'pull',
      `${secured.host}/cli/app:v1`,
      `oci:${join(work, 'z')}`,
      '--authfile',
      authfile,
    ]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('UNAUTHORIZED');
  });

  it('login to an --authfile under /proc: one line, exit 1 (a recursive mkdir there never returned)', async () => {
    const result = await run([
      'login',
      '-u',
      'ci',
      '-p',
      'cli-Pass-4431',
      '--authfile',
      '/proc/stratum-no-such-dir/config.json',
      secured.host,
    ]);
    expect(result.code).toBe(1);
    // (after the warning that -p gives)
    expect(result.stderr.split('\n').slice(-2).join('\n')).toBe(
      'stratum: /proc/stratum-no-such-dir/config.json: cannot write: /proc/stratum-no-such-dir: cannot create /proc/stratum-no-such-dir (ENOENT)\n',
    );
  });
});
