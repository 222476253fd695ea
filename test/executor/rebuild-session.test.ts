import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';
import { RebuildSession } from '../../src/executor/rebuild-session.js';
import { mountsBelow } from '../../src/snapshot/unpacked-layers.js';

/**
 * A RebuildSession (what `build --watch` keeps between builds: the overlay snapshotter and its
 * session, the stat cache, the explain record) changes how fast a rebuild is, never what it
 * builds, and leaves nothing mounted between builds nor after close.
 */
describe.skipIf(!isRoot)('builds in one RebuildSession', () => {
  let sandbox: BuildSandbox;
  beforeAll(() => {
    sandbox = buildSandbox();
  });
  afterAll(() => {
    sandbox.cleanup();
  });

  it('give the images builds without a session give, and hold no mount between builds', async () => {
    const ctx = sandbox.context('session', {
      Dockerfile: `FROM ${sandbox.baseRef}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n`,
      'a.txt': 'one\n',
    });
    const session = new RebuildSession();
    const epoch = { sourceDateEpoch: 1_700_000_000, snapshotter: 'overlay' as const };
    const sessions = join(sandbox.cacheDir, 'overlay', 'sessions');
    try {
      const first = await sandbox.build(ctx, { ...epoch, rebuildSession: session });
      expect(await mountsBelow(sandbox.cacheDir)).toEqual([]);
      // One overlay session for the process, kept between builds.
      expect(readdirSync(sessions)).toHaveLength(1);
      writeFileSync(join(ctx, 'a.txt'), 'two\n');
      const second = await sandbox.build(ctx, { ...epoch, rebuildSession: session, explain: true });
      expect(second.digest).not.toBe(first.digest);
      expect(await mountsBelow(sandbox.cacheDir)).toEqual([]);
      // --explain compares with the session's last build, held in memory.
      const reasons = second.events.flatMap((event) => (event.kind === 'cache' ? event.reasons : []));
      expect(reasons.join('\n')).toMatch(/a\.txt changed/);
      // A failed build releases its mounts too.
      writeFileSync(join(ctx, 'Dockerfile'), `FROM ${sandbox.baseRef}\nCOPY a.txt /a.txt\nRUN exit 4\n`);
      await expect(sandbox.build(ctx, { ...epoch, rebuildSession: session })).rejects.toThrow(/4/);
      expect(await mountsBelow(sandbox.cacheDir)).toEqual([]);
      // The same context without a session, and with a cache of its own: the same image.
      writeFileSync(
        join(ctx, 'Dockerfile'),
        `FROM ${sandbox.baseRef}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n`,
      );
      const again = await sandbox.build(ctx, { ...epoch, rebuildSession: session });
      const alone = await sandbox.build(ctx, { ...epoch, cacheDir: join(sandbox.dir, 'alone-cache') });
      expect(again.digest).toBe(second.digest);
      expect(alone.digest).toBe(second.digest);
    } finally {
      await session.close();
    }
    expect(readdirSync(sessions)).toEqual([]);
    expect(await mountsBelow(sandbox.cacheDir)).toEqual([]);
  });
});
