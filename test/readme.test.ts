import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyOciLayout } from '../src/transport/index.js';

const REPO = resolve(import.meta.dirname, '..');

/** The first ```js block under a README heading. */
function snippetUnder(heading: string): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(`\n## ${heading}\n`));
  const match = /```js\n([\s\S]*?)```/.exec(section);
  if (match === null) throw new Error(`README.md: no js block under "## ${heading}"`);
  return match[1]!;
}

describe("the README's library API snippet", () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-readme-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs as written (importing the package by name) and writes the layout it names', async () => {
    const snippet = snippetUnder('Library API');
    expect(snippet.split('\n').length).toBeLessThanOrEqual(16);
    expect(snippet).toContain("from 'stratum'");
    // Only the output path moves to a private directory; the code is run as printed.
    const code = snippet.replaceAll('/tmp/hello-api', join(dir, 'hello-api'));
    // Evaluated from the repository root, `stratum` resolves to this package (self-reference).
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', code], {
      cwd: REPO,
      encoding: 'utf8',
      env: { ...process.env, STRATUM_CACHE_DIR: join(dir, 'cache'), STRATUM_DATA_DIR: join(dir, 'data') },
    });
    expect(stdout).toMatch(/^COPY hello.txt \/hello.txt done\n/);
    const digest = /(sha256:[0-9a-f]{64}) \[/.exec(stdout)?.[1];
    expect(digest, stdout).toBeDefined();
    expect(stdout).toContain(`oci:${join(dir, 'hello-api')}:latest`);
    const layout = await verifyOciLayout(join(dir, 'hello-api'));
    expect(layout.blobs).toBeGreaterThanOrEqual(3);
  });
});
