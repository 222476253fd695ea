import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireCacheMount, cacheMountKey } from '../../src/executor/cache-mounts.js';
import { isRoot } from '../helpers/system.js';

/** RUN --mount=type=cache directories: identity (id, uid, gid, mode) and sharing, as BuildKit has them. */
describe('cache mounts', () => {
  const root = mkdtempSync(join(tmpdir(), 'stratum-cache-mounts-'));
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const base = { uid: 0, gid: 0, mode: 0o755 } as const;

  it('sharing=shared: every user gets the same directory at once', async () => {
    const one = await acquireCacheMount(root, { id: 'shared', ...base, sharing: 'shared' });
    const two = await acquireCacheMount(root, { id: 'shared', ...base, sharing: 'shared' });
    expect(two.dir).toBe(one.dir);
    await one.release();
    await two.release();
  });

  it('sharing=private: a second user gets an instance of its own; a freed instance is reused', async () => {
    const one = await acquireCacheMount(root, { id: 'private', ...base, sharing: 'private' });
    const two = await acquireCacheMount(root, { id: 'private', ...base, sharing: 'private' });
    expect(two.dir).not.toBe(one.dir);
    writeFileSync(join(one.dir, 'from-one'), '1');
    await one.release();
    const three = await acquireCacheMount(root, { id: 'private', ...base, sharing: 'private' });
    expect(three.dir).toBe(one.dir);
    expect(statSync(join(three.dir, 'from-one')).isFile()).toBe(true);
    await two.release();
    await three.release();
  });

  it('sharing=locked: a second user waits until the first releases, then gets the same directory', async () => {
    const one = await acquireCacheMount(root, { id: 'locked', ...base, sharing: 'locked' });
    let second: Awaited<ReturnType<typeof acquireCacheMount>> | undefined;
    const waiting = acquireCacheMount(root, { id: 'locked', ...base, sharing: 'locked' }).then((use) => {
      second = use;
      return use;
    });
    await sleep(300);
    expect(second).toBeUndefined();
    await one.release();
    const two = await waiting;
    expect(two.dir).toBe(one.dir);
    await two.release();
  });

  it('a lock left by a process that is gone (SIGKILL) is taken over', async () => {
    const key = cacheMountKey({ id: 'orphan', ...base });
    writeFileSync(join(root, `${key}.lock`), '2147483646-12345');
    const use = await acquireCacheMount(root, { id: 'orphan', ...base, sharing: 'locked' });
    expect(use.dir).toBe(join(root, key));
    await use.release();
  });

  it('an abort ends the wait of a locked user', async () => {
    const one = await acquireCacheMount(root, { id: 'abort', ...base, sharing: 'locked' });
    const controller = new AbortController();
    const waiting = acquireCacheMount(
      root,
      { id: 'abort', ...base, sharing: 'locked' },
      { signal: controller.signal },
    );
    controller.abort();
    await expect(waiting).rejects.toThrow();
    await one.release();
  });

  it.skipIf(!isRoot)(
    'one id under two owners is two caches, each made with its uid, gid and mode',
    async () => {
      const owned = await acquireCacheMount(root, {
        id: 'owners',
        uid: 1000,
        gid: 50,
        mode: 0o750,
        sharing: 'shared',
      });
      const plain = await acquireCacheMount(root, { id: 'owners', ...base, sharing: 'shared' });
      expect(owned.dir).not.toBe(plain.dir);
      const st = statSync(owned.dir);
      expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 50, 0o750]);
      const rootSt = statSync(plain.dir);
      expect([rootSt.uid, rootSt.gid, rootSt.mode & 0o7777]).toEqual([0, 0, 0o755]);
    },
  );
});
