import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeImage } from '../../src/analyze/analyze.js';
import { formatAnalysis } from '../../src/analyze/format.js';
import { writeAnalysisHtml } from '../../src/analyze/html.js';
import { requireTool } from '../helpers/system.js';
import { BASE, buildImage } from './images.js';

/** The --html page, opened in headless Chromium: it must render every layer with no network. */

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'stratum-analyze-html-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!requireTool('chromium', 'chromium'))('analyze --html in headless Chromium', () => {
  it('renders the layer chart and the tables built by its inline script', async () => {
    const image = await buildImage([
      BASE,
      {
        createdBy: 'RUN <script>alert(1)</script> && make',
        members: [{ name: 'big', content: 'x'.repeat(50_000) }],
      },
      { createdBy: 'RUN rm big', members: [{ name: '.wh.big' }] },
      { createdBy: 'COPY id_rsa /root/.ssh/id_rsa', members: [{ name: 'root/.ssh/id_rsa', content: 'KEY' }] },
      { createdBy: 'RUN rm /root/.ssh/id_rsa', members: [{ name: 'root/.ssh/.wh.id_rsa' }] },
    ]);
    const analysis = await analyzeImage(image.source);
    const page = join(dir, 'report.html');
    await writeAnalysisHtml(analysis, page);
    const html = readFileSync(page, 'utf8');
    // Self-contained: nothing is fetched.
    expect(html).not.toMatch(/\b(src|href)=["']?https?:/);
    expect(html).not.toContain('<script>alert(1)</script>');

    const { stdout } = await run(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        `--user-data-dir=${join(dir, 'profile')}`,
        '--dump-dom',
        `file://${page}`,
      ],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    // The inline script ran and filled the tables from the embedded analysis.
    expect(stdout).toContain('<body data-rendered="yes">');
    const layerRows = /<tbody id="layers-body">(.*?)<\/tbody>/s.exec(stdout)?.[1] ?? '';
    expect(layerRows.match(/<tr>/g)).toHaveLength(5);
    expect(layerRows).toContain('RUN &lt;script&gt;alert(1)&lt;/script&gt; &amp;&amp; make');
    expect(layerRows).toContain('COPY id_rsa /root/.ssh/id_rsa');
    // One bar group per layer in the SVG chart, the wasted layer marked with its bytes.
    expect(stdout.match(/<g class="layer" /g)).toHaveLength(5);
    expect(stdout).toContain('data-layer="2" data-wasted="50000"');
    const recoverable = /<tbody id="recoverable-body">(.*?)<\/tbody>/s.exec(stdout)?.[1] ?? '';
    expect(recoverable).toMatch(
      /<tr class="secret"><td>SECRET\? SSH private key<\/td><td>root\/\.ssh\/id_rsa<\/td>/,
    );
    expect(stdout).toContain('id="efficiency"');
  }, 90_000);

  it('says what a copy-up changed in the words of the text report (issue 26: "changed (content: content)")', async () => {
    const block = 16 * 1024;
    const content = Buffer.alloc(20 * block, 7);
    const edited = Buffer.from(content);
    edited[5] = 1;
    const image = await buildImage([
      BASE,
      { createdBy: 'COPY db', members: [{ name: 'db', content }] },
      { createdBy: 'RUN edit', members: [{ name: 'db', content: edited }] },
    ]);
    const analysis = await analyzeImage(image.source);
    const wording = 'changed (content: 1 of 20 16 KiB blocks)';
    expect(formatAnalysis(analysis)).toContain(`${wording}: whole file copied up`);
    const page = join(dir, 'copyup.html');
    await writeAnalysisHtml(analysis, page);
    const { stdout } = await run(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${join(dir, 'profile-copyup')}`,
        '--dump-dom',
        `file://${page}`,
      ],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
    const rows = /<tbody id="copyup-body">(.*?)<\/tbody>/s.exec(stdout)?.[1] ?? '';
    expect(rows).toContain(`<td>${wording}</td>`);
  }, 90_000);
});
