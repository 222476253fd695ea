import { rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { lstat, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applyCopy,
  planAdd,
  planCopy,
  type CopyPlan,
  type SourceRoot,
} from '../../../src/executor/context/index.js';
import { build, makeTar, tempDir, type Node } from './helpers.js';

/** A name no host path has, so a write that escaped would be visible and harmless. */
const unique = `stratum-escape-${process.pid}-${Date.now()}`;

async function env(context: Record<string, Node>, rootfsTree: Record<string, Node>) {
  const ctx = await tempDir();
  const rootfs = await tempDir('stratum-rootfs-');
  await build(ctx, context);
  await build(rootfs, rootfsTree);
  const root: SourceRoot = { kind: 'context', dir: ctx };
  return { ctx, rootfs, root };
}

describe('safety: COPY never writes outside the rootfs', () => {
  it('rootfs symlink /app -> /etc: the file lands in ROOTFS/etc, never in the host /etc', async () => {
    const e = await env({ [unique]: 'payload' }, { etc: { dir: true }, app: { symlink: '/etc' } });
    await applyCopy(await planCopy({ sources: [unique], dest: '/app/', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, 'etc', unique), 'utf8')).toBe('payload');
    expect(existsSync(join('/etc', unique))).toBe(false);
  });

  it('rootfs symlink /app -> ../../..: `..` is clamped at the rootfs root', async () => {
    const e = await env({ [unique]: 'payload' }, { app: { symlink: '../../..' } });
    await applyCopy(await planCopy({ sources: [unique], dest: '/app/', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, unique), 'utf8')).toBe('payload');
    expect(existsSync(join(e.rootfs, '..', unique))).toBe(false);
    expect(existsSync(join('/', unique))).toBe(false);
  });

  it('rootfs symlink chain /a -> /b, /b -> ../../../tmp/<x>: the whole chain stays inside', async () => {
    const e = await env({ f: 'payload' }, { a: { symlink: '/b' }, b: { symlink: `../../../tmp/${unique}` } });
    await applyCopy(await planCopy({ sources: ['f'], dest: '/a/sub/', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, 'tmp', unique, 'sub/f'), 'utf8')).toBe('payload');
    expect(existsSync(join('/tmp', unique))).toBe(false);
  });

  it('dangling rootfs symlink as the destination: the missing target is created inside the rootfs', async () => {
    const e = await env({ 'd/x': 'x' }, { app: { symlink: `/${unique}/deep` } });
    await applyCopy(await planCopy({ sources: ['d'], dest: '/app', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, unique, 'deep/x'), 'utf8')).toBe('x');
    expect(existsSync(join('/', unique))).toBe(false);
  });

  it('rootfs symlink below the destination (/app/conf -> /etc) is replaced by a directory, not written through', async () => {
    const e = await env(
      { 'src/conf/passwd': 'evil' },
      { 'etc/passwd': 'root:x:0:0', app: { dir: true }, 'app/conf': { symlink: '/etc' } },
    );
    await applyCopy(await planCopy({ sources: ['src'], dest: '/app/', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, 'etc/passwd'), 'utf8')).toBe('root:x:0:0');
    expect((await lstat(join(e.rootfs, 'app/conf'))).isDirectory()).toBe(true);
    expect(await readFile(join(e.rootfs, 'app/conf/passwd'), 'utf8')).toBe('evil');
  });

  it('single file onto a rootfs symlink to a file: the symlink is replaced, its target untouched', async () => {
    const e = await env({ conf: 'new' }, { 'etc/shadow': 'secret', 'app/conf': { symlink: '/etc/shadow' } });
    await applyCopy(await planCopy({ sources: ['conf'], dest: '/app/conf', root: e.root }), e.rootfs);
    expect(await readFile(join(e.rootfs, 'etc/shadow'), 'utf8')).toBe('secret');
    expect(await readFile(join(e.rootfs, 'app/conf'), 'utf8')).toBe('new');
    expect((await lstat(join(e.rootfs, 'app/conf'))).isSymbolicLink()).toBe(false);
  });
});

describe('safety: a plan is only data, and a bad one cannot escape either', () => {
  it('hand-made plan writing conf/passwd under a rootfs symlink conf -> /etc is refused', async () => {
    const e = await env({ passwd: 'evil' }, { 'etc/passwd': 'root:x:0:0', 'app/conf': { symlink: '/etc' } });
    const plan: CopyPlan = {
      instruction: 'COPY',
      dest: '/app',
      destIsDir: true,
      singleFile: false,
      entries: [
        {
          sourcePath: join(e.ctx, 'passwd'),
          sourceName: 'passwd',
          destRelPath: 'conf/passwd',
          type: 'file',
          mode: 0o644,
          size: 4,
          mtimeMs: 0,
          sourceIndex: 0,
        },
      ],
    };
    await expect(applyCopy(plan, e.rootfs)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    await expect(
      applyCopy({ ...plan, entries: [{ ...plan.entries[0]!, destRelPath: '../../x' }] }, e.rootfs),
    ).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
    expect(await readFile(join(e.rootfs, 'etc/passwd'), 'utf8')).toBe('root:x:0:0');
  });
});

describe('safety: sources never come from outside the build context', () => {
  it('context source ../x is refused with UNSAFE_PATH naming the source', async () => {
    const e = await env({ a: 'a' }, {});
    await writeFile(join(e.ctx, '..', `${unique}-outside`), 'host file');
    try {
      await expect(
        planCopy({ sources: [`../${unique}-outside`], dest: '/x', root: e.root }),
      ).rejects.toMatchObject({
        code: 'UNSAFE_PATH',
        message: expect.stringContaining(`COPY ../${unique}-outside`),
      });
      await expect(planCopy({ sources: ['sub/../../x'], dest: '/x', root: e.root })).rejects.toMatchObject({
        code: 'UNSAFE_PATH',
      });
    } finally {
      await rm(join(e.ctx, '..', `${unique}-outside`), { force: true });
    }
  });

  it('a context symlink pointing out (absolute) named as a source is refused', async () => {
    const e = await env({ leak: { symlink: '/etc/passwd' } }, {});
    await expect(planCopy({ sources: ['leak'], dest: '/x', root: e.root })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
      message: expect.stringContaining('COPY leak'),
    });
  });

  it('a context symlink pointing out (relative ../..) named as a source is refused', async () => {
    const e = await env({ leak: { symlink: '../../../../../../etc/passwd' } }, {});
    await expect(planCopy({ sources: ['leak'], dest: '/x', root: e.root })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
  });

  it('a symlink component leading out (link/passwd with link -> /etc) is refused', async () => {
    const e = await env({ link: { symlink: '/etc' } }, {});
    await expect(planCopy({ sources: ['link/passwd'], dest: '/x', root: e.root })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
    await expect(planCopy({ sources: ['link/*'], dest: '/x/', root: e.root })).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
    });
  });

  it('a symlink pointing out inside a copied directory is copied as a symlink, its target never read', async () => {
    const e = await env({ 'd/passwd': { symlink: '/etc/passwd' } }, {});
    const plan = await planCopy({ sources: ['d'], dest: '/d/', root: e.root });
    expect(plan.entries.map((x) => [x.destRelPath, x.type])).toEqual([['passwd', 'symlink']]);
    await applyCopy(plan, e.rootfs);
    expect(await readlink(join(e.rootfs, 'd/passwd'))).toBe('/etc/passwd');
  });
});

describe('safety: ADD archives never write outside the destination', () => {
  it('archive entry ../../escape is refused (path traversal)', async () => {
    const e = await env({}, {});
    await writeFile(
      join(e.ctx, 'evil.tar'),
      await makeTar([
        { name: 'ok.txt', content: 'ok' },
        { name: `../../${unique}`, content: 'evil' },
      ]),
    );
    const plan = await planAdd({ sources: ['evil.tar'], dest: '/d/', root: e.root, tmpDir: e.ctx });
    await expect(applyCopy(plan, e.rootfs)).rejects.toMatchObject({
      code: 'UNSAFE_PATH',
      message: expect.stringContaining('evil.tar'),
    });
    expect(existsSync(join(e.rootfs, unique))).toBe(false);
    expect(existsSync(join(e.rootfs, '..', unique))).toBe(false);
  });

  it('archive entry with an absolute name (/etc/x) lands inside the destination', async () => {
    const e = await env({}, {});
    await writeFile(join(e.ctx, 'abs.tar'), await makeTar([{ name: `/etc/${unique}`, content: 'abs' }]));
    await applyCopy(
      await planAdd({ sources: ['abs.tar'], dest: '/d/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    expect(await readFile(join(e.rootfs, 'd/etc', unique), 'utf8')).toBe('abs');
    expect(existsSync(join('/etc', unique))).toBe(false);
  });

  it('archive symlink to /etc followed by a file through it lands inside the destination (symlink traversal)', async () => {
    const e = await env({}, { etc: { dir: true } });
    await writeFile(
      join(e.ctx, 'traverse.tar'),
      await makeTar([
        { name: 'esc', type: 'symlink', linkname: '/etc' },
        { name: `esc/${unique}`, content: 'evil' },
        { name: 'up', type: 'symlink', linkname: '../../../../..' },
        { name: `up/${unique}-2`, content: 'evil2' },
      ]),
    );
    await applyCopy(
      await planAdd({ sources: ['traverse.tar'], dest: '/d/', root: e.root, tmpDir: e.ctx }),
      e.rootfs,
    );
    expect(existsSync(join('/etc', unique))).toBe(false);
    expect(existsSync(join(e.rootfs, 'etc', unique))).toBe(false);
    expect(await readFile(join(e.rootfs, 'd/etc', unique), 'utf8')).toBe('evil');
    expect(await readFile(join(e.rootfs, 'd', `${unique}-2`), 'utf8')).toBe('evil2');
    expect(existsSync(join('/', `${unique}-2`))).toBe(false);
  });

  it('archive hard link to ../../etc/passwd is refused (hard-link escape)', async () => {
    const e = await env({}, {});
    await writeFile(
      join(e.ctx, 'hl.tar'),
      await makeTar([{ name: 'hl', type: 'link', linkname: '../../etc/passwd' }]),
    );
    const plan = await planAdd({ sources: ['hl.tar'], dest: '/d/', root: e.root, tmpDir: e.ctx });
    await expect(applyCopy(plan, e.rootfs)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });
});
