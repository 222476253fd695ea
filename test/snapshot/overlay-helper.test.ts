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

  it("probes namespaces in a forked child: the RUN sandbox's flags work as root; an invalid flag gives the kernel's error", async () => {
    // CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID, as every RUN step
    expect(
      await runOverlayHelper([{ op: 'nsprobe', flags: 0x00020000 | 0x04000000 | 0x08000000 | 0x20000000 }]),
    ).toEqual(['ok']);
    // A bit unshare(2) does not know (CSIGNAL's lowest): EINVAL, as the answer (not a failed batch)
    const [answer] = await runOverlayHelper([{ op: 'nsprobe', flags: 0x00000001 }]);
    expect(answer).toMatch(/^unshare: Invalid argument/);
    // The helper itself stayed in this process's namespaces and goes on answering.
    expect(
      await runOverlayHelper([{ op: 'getopq', path: dir, name: 'trusted.overlay.opaque' }]),
    ).toHaveLength(1);
  });

  it('syncs the filesystem of a path; a missing path fails its batch, naming it', async () => {
    expect(await runOverlayHelper([{ op: 'syncfs', path: dir }])).toEqual([]);
    await expect(runOverlayHelper([{ op: 'syncfs', path: join(dir, 'nowhere') }])).rejects.toThrow(
      `overlay helper: open ${join(dir, 'nowhere')}: No such file or directory`,
    );
  });

  it('paths with newlines and non-ASCII bytes pass through unchanged', async () => {
    const odd = join(dir, 'new\nline é');
    await runOverlayHelper([{ op: 'wh', path: odd }]);
    expect(lstatSync(odd).isCharacterDevice()).toBe(true);
  });
});
