import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot } from '../helpers/system.js';
import { runOverlayHelper } from '../../src/snapshot/overlay-helper.js';

/**
 * The one long-lived helper process: batches answered in order, a failing batch reported without
 * losing the process, and nothing left running that would keep Node from exiting.
 */
describe.skipIf(!isRoot)('overlay helper', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-helper-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes whiteouts and opaque flags and answers queries, batches in order', async () => {
    await runOverlayHelper([
      { op: 'wh', path: join(dir, 'gone') },
      { op: 'opq', path: dir, name: 'trusted.overlay.opaque' },
    ]);
    const stat = lstatSync(join(dir, 'gone'));
    expect(stat.isCharacterDevice()).toBe(true);
    expect(stat.rdev).toBe(0);
    expect(stat.mode & 0o7777).toBe(0);
    // Several batches at once: each gets its own answers.
    const answers = await Promise.all([
      runOverlayHelper([{ op: 'getopq', path: dir, name: 'trusted.overlay.opaque' }]),
      runOverlayHelper([
        { op: 'getopq', path: join(dir, 'gone'), name: 'trusted.overlay.opaque' },
        { op: 'getopq', path: dir, name: 'trusted.overlay.opaque' },
      ]),
      runOverlayHelper([{ op: 'getopq', path: join(dir, 'missing'), name: 'trusted.overlay.opaque' }]),
    ]);
    expect(answers).toEqual([['y'], ['n', 'y'], ['n']]);
  });

  it('a failing operation fails its batch only, naming the path; the next batch runs', async () => {
    const bad = join(dir, 'no-such-dir', 'x');
    await expect(
      runOverlayHelper([
        { op: 'wh', path: join(dir, 'first') },
        { op: 'wh', path: bad },
        { op: 'wh', path: join(dir, 'skipped') },
      ]),
    ).rejects.toThrow(`overlay helper: whiteout ${bad}: No such file or directory`);
    expect(lstatSync(join(dir, 'first')).isCharacterDevice()).toBe(true);
    expect(() => lstatSync(join(dir, 'skipped'))).toThrow(/ENOENT/);
    expect(await runOverlayHelper([{ op: 'getopq', path: dir, name: 'trusted.overlay.opaque' }])).toEqual([
      'y',
    ]);
  });

  it('paths with newlines and non-ASCII bytes pass through unchanged', async () => {
    const odd = join(dir, 'new\nline é');
    await runOverlayHelper([{ op: 'wh', path: odd }]);
    expect(lstatSync(odd).isCharacterDevice()).toBe(true);
  });
});
