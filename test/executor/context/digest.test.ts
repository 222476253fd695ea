import { chmod, rename, symlink, unlink, utimes, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  applyCopy,
  digestSources,
  HeldContents,
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

describe('source digest: its bytes', () => {
  it('is the sha256 of the length-framed fields, a name that is not UTF-8 framed by its own bytes', async () => {
    const ctx = await tempDir();
    await build(ctx, { 'src/a.txt': { content: 'hello', mode: 0o644 } });
    const selected = await planCopy({ sources: ['src'], dest: '/app/', root: { kind: 'context', dir: ctx } });
    // A hand-made symlink entry named by the byte 0xE9 (escaped as U+DCE9, see util/file-names).
    const latin1: CopyEntry = {
      sourcePath: '/unused',
      sourceName: 'caf\udce9',
      destRelPath: 'caf\udce9',
      type: 'symlink',
      mode: 0o777,
      size: 0,
      mtimeMs: 0,
      linkTarget: 't',
      sourceIndex: 1,
    };
    const plan: CopyPlan = { ...selected, entries: [...selected.entries, latin1] };
    const expected = createHash('sha256');
    const field = (bytes: Buffer): void => {
      const length = Buffer.alloc(8);
      length.writeBigUInt64BE(BigInt(bytes.length));
      expected.update(length).update(bytes);
    };
    const text = (value: string): void => {
      field(Buffer.from(value, 'utf8'));
    };
    text('stratum copy sources v1');
    text('into-directory');
    text('2');
    // src/a.txt: index, name, destination, type, mode, owner, link target, link group, content.
    for (const value of ['0', 'src/a.txt', 'a.txt', 'file', '644', '0:0', '', '']) text(value);
    text(`sha256:${createHash('sha256').update('hello').digest('hex')}`);
    text('1');
    field(Buffer.from('caf\xe9', 'latin1'));
    field(Buffer.from('caf\xe9', 'latin1'));
    for (const value of ['symlink', '777', '0:0', 't', '', '']) text(value);
    expect((await digestSources(plan)).digest).toBe(`sha256:${expected.digest('hex')}`);
  });
});

describe('source digest: the bytes it reads are kept for the copy (HeldContents)', () => {
  it('keeps the small files it reads, up to its limit; a large file is not kept', async () => {
    const ctx = await tempDir();
    await build(ctx, { 'src/a': 'aaaaa', 'src/b': 'bbbbb', 'src/c': 'ccccc' });
    await writeFile(join(ctx, 'src/big'), Buffer.alloc(300 * 1024, 1));
    const held = new HeldContents(12);
    await contextDigest(ctx, {}, { keepContents: held });
    expect(held.size).toBe(10);
    // Which two of the three fit depends on the order they were read in; each once.
    const kept = ['a', 'b', 'c'].filter((name) => {
      const data = held.take(join(ctx, 'src', name));
      if (data !== undefined) expect(data.toString()).toBe(name.repeat(5));
      return data !== undefined;
    });
    expect(kept).toHaveLength(2);
    expect(held.size).toBe(0);
    const roomy = new HeldContents();
    await contextDigest(ctx, {}, { keepContents: roomy });
    expect(roomy.take(join(ctx, 'src/big'))).toBeUndefined();
    expect(roomy.size).toBe(15);
  });

  it('keeps nothing for a file the stat cache answers (the copy reads it)', async () => {
    const ctx = await fixture();
    await sleep(60); // past the racy window
    const cache = await StatCache.open();
    await contextDigest(ctx, {}, { statCache: cache });
    const held = new HeldContents();
    await contextDigest(ctx, {}, { statCache: cache, keepContents: held });
    expect(cache.hits).toBe(3);
    expect(held.size).toBe(0);
  });

  it('the copy writes the held bytes (those the key was computed from) and reads the rest', async () => {
    const ctx = await tempDir();
    await build(ctx, { 'src/a': 'digested', 'src/b': 'bbb' });
    const plan = await planCopy({ sources: ['src'], dest: '/app/', root: { kind: 'context', dir: ctx } });
    const held = new HeldContents(8); // 'digested' fits, 'bbb' then does not
    await digestSources(plan, { keepContents: held });
    expect(held.size).toBe(8);
    await writeFile(join(ctx, 'src/a'), 'changed!');
    await writeFile(join(ctx, 'src/b'), 'BBB');
    const rootfs = await tempDir('stratum-rootfs-');
    await applyCopy(plan, rootfs, { contents: held });
    expect(await readFile(join(rootfs, 'app/a'), 'utf8')).toBe('digested');
    expect(await readFile(join(rootfs, 'app/b'), 'utf8')).toBe('BBB');
    expect(held.size).toBe(0);
  });
});
