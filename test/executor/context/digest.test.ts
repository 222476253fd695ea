import { chmod, rename, symlink, unlink, utimes, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  digestSources,
  explainSourceChanges,
  planCopy,
  StatCache,
  type CopyEntry,
  type CopyPlan,
  type CopyRequest,
  type DigestOptions,
} from '../../../src/executor/context/index.js';
import { build, tempDir } from './helpers.js';

async function contextDigest(ctx: string, request: Partial<CopyRequest> = {}, options: DigestOptions = {}) {
  const plan = await planCopy({
    sources: ['src'],
    dest: '/app/',
    root: { kind: 'context', dir: ctx },
    ...request,
  });
  return digestSources(plan, options);
}

async function fixture() {
  const ctx = await tempDir();
  await build(ctx, {
    'src/app.js': 'console.log(1)',
    'src/lib/util.js': 'export {}',
    'src/run.sh': { content: 'run', mode: 0o755 },
  });
  return ctx;
}

describe('source digest: what changes it', () => {
  it('is stable for the same selection', async () => {
    const ctx = await fixture();
    expect((await contextDigest(ctx)).digest).toBe((await contextDigest(ctx)).digest);
  });

  it('changes when a file content changes', async () => {
    const ctx = await fixture();
    const before = await contextDigest(ctx);
    await writeFile(join(ctx, 'src/app.js'), 'console.log(2)');
    const after = await contextDigest(ctx);
    expect(after.digest).not.toBe(before.digest);
    expect(explainSourceChanges(before.files, after.files)).toEqual(['src/app.js changed (content)']);
  });

  it('changes when a file is renamed (same content)', async () => {
    const ctx = await fixture();
    const before = await contextDigest(ctx);
    await rename(join(ctx, 'src/lib/util.js'), join(ctx, 'src/lib/utils.js'));
    const after = await contextDigest(ctx);
    expect(after.digest).not.toBe(before.digest);
    expect(explainSourceChanges(before.files, after.files).sort()).toEqual([
      'src/lib/util.js removed',
      'src/lib/utils.js added',
    ]);
  });

  it('changes when a mode changes', async () => {
    const ctx = await fixture();
    const before = await contextDigest(ctx);
    await chmod(join(ctx, 'src/app.js'), 0o755);
    const after = await contextDigest(ctx);
    expect(after.digest).not.toBe(before.digest);
    expect(explainSourceChanges(before.files, after.files)).toEqual(['src/app.js changed (mode 644 → 755)']);
  });

  it('changes with the owner --chown gives, and with --chmod', async () => {
    const ctx = await fixture();
    const plain = await contextDigest(ctx);
    const chowned = await contextDigest(ctx, {}, { chown: { uid: 1000, gid: 1000 } });
    const chmodded = await contextDigest(ctx, {}, { chmod: '600' });
    expect(new Set([plain.digest, chowned.digest, chmodded.digest]).size).toBe(3);
    expect(chowned.files['src/app.js']).toMatchObject({ uid: 1000, gid: 1000 });
  });

  it('changes when a symlink target changes', async () => {
    const ctx = await fixture();
    await symlink('app.js', join(ctx, 'src/current'));
    const before = await contextDigest(ctx);
    await unlink(join(ctx, 'src/current'));
    await symlink('run.sh', join(ctx, 'src/current'));
    const after = await contextDigest(ctx);
    expect(after.digest).not.toBe(before.digest);
    expect(explainSourceChanges(before.files, after.files)).toEqual([
      'src/current changed (link target app.js → run.sh)',
    ]);
  });

  it('changes when .dockerignore changes what is selected', async () => {
    const ctx = await fixture();
    const { compileIgnore } = await import('../../../src/executor/context/index.js');
    const all = await contextDigest(ctx);
    const ignoring = await contextDigest(ctx, {
      root: { kind: 'context', dir: ctx, ignore: compileIgnore(['**/*.sh']) },
    });
    expect(ignoring.digest).not.toBe(all.digest);
    expect(Object.keys(ignoring.files)).not.toContain('src/run.sh');
  });

  it('large files (hashed as a stream) count by content too', async () => {
    const ctx = await fixture();
    await writeFile(join(ctx, 'src/big.bin'), Buffer.alloc(1024 * 1024, 1));
    const before = await contextDigest(ctx);
    const big = Buffer.alloc(1024 * 1024, 1);
    big[big.length - 1] = 2;
    await writeFile(join(ctx, 'src/big.bin'), big);
    const after = await contextDigest(ctx);
    expect(explainSourceChanges(before.files, after.files)).toEqual(['src/big.bin changed (content)']);
  });

  it('does not change when only mtimes change (touch)', async () => {
    const ctx = await fixture();
    const before = await contextDigest(ctx);
    await utimes(join(ctx, 'src/app.js'), 12345, 12345);
    await utimes(join(ctx, 'src/lib'), 12345, 12345);
    expect((await contextDigest(ctx)).digest).toBe(before.digest);
  });

  it('frames every field, so values cannot run together', async () => {
    const entry = (sourceName: string, linkTarget: string): CopyEntry => ({
      sourcePath: '/unused',
      sourceName,
      destRelPath: 'same',
      type: 'symlink',
      mode: 0o777,
      size: 0,
      mtimeMs: 0,
      linkTarget,
      sourceIndex: 0,
    });
    const plan = (e: CopyEntry): CopyPlan => ({
      instruction: 'COPY',
      dest: '/d',
      destIsDir: true,
      singleFile: false,
      entries: [e],
    });
    const a = await digestSources(plan(entry('ab', 'c')));
    const b = await digestSources(plan(entry('a', 'bc')));
    expect(a.digest).not.toBe(b.digest);
  });
});

describe('stat cache: unchanged files are not re-read', () => {
  it('a second digest reads no file; a changed file is read again', async () => {
    const ctx = await fixture();
    await sleep(60); // past the racy window: files changed right before hashing are always re-read
    const cache = await StatCache.open();
    await contextDigest(ctx, {}, { statCache: cache });
    expect(cache.reads).toBe(3);
    const again = await contextDigest(ctx, {}, { statCache: cache });
    expect(cache.reads).toBe(3);
    expect(cache.hits).toBe(3);
    await writeFile(join(ctx, 'src/app.js'), 'changed!!!!!!!');
    await sleep(60);
    const changed = await contextDigest(ctx, {}, { statCache: cache });
    expect(cache.reads).toBe(4);
    expect(changed.digest).not.toBe(again.digest);
  });

  it('is persisted to the JSON file the caller names and reused by a new process', async () => {
    const ctx = await fixture();
    const cachePath = join(await tempDir('stratum-statcache-'), 'sub/stat-cache.json');
    await sleep(60);
    const first = await StatCache.open(cachePath);
    const d1 = await contextDigest(ctx, {}, { statCache: first });
    await first.save();
    const stored = JSON.parse(await readFile(cachePath, 'utf8')) as {
      version: number;
      entries: Record<string, unknown>;
    };
    expect(stored.version).toBe(1);
    expect(Object.keys(stored.entries)).toContain(join(ctx, 'src/app.js'));
    const second = await StatCache.open(cachePath);
    const d2 = await contextDigest(ctx, {}, { statCache: second });
    expect(second.reads).toBe(0);
    expect(d2.digest).toBe(d1.digest);
  });

  it('a file rewritten with the same size right after hashing is re-read (racy window)', async () => {
    const ctx = await tempDir();
    await build(ctx, { 'src/a': 'aaaa' });
    const cache = await StatCache.open();
    const d1 = await contextDigest(ctx, {}, { statCache: cache });
    await writeFile(join(ctx, 'src/a'), 'bbbb');
    const d2 = await contextDigest(ctx, {}, { statCache: cache });
    expect(d2.digest).not.toBe(d1.digest);
  });

  it('a corrupt cache file is ignored and rebuilt', async () => {
    const dir = await tempDir('stratum-statcache-');
    await writeFile(join(dir, 'c.json'), '{not json');
    const cache = await StatCache.open(join(dir, 'c.json'));
    const ctx = await fixture();
    await contextDigest(ctx, {}, { statCache: cache });
    await cache.save();
    expect(JSON.parse(await readFile(join(dir, 'c.json'), 'utf8'))).toMatchObject({ version: 1 });
  });
});
