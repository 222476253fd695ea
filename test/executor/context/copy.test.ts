import { link, lstat, readFile, readdir, readlink, stat, utimes } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applyCopy,
  planCopy,
  type ApplyOptions,
  type CopyRequest,
  type SourceRoot,
} from '../../../src/executor/context/index.js';
import { build, tempDir, type Node } from './helpers.js';

async function setup(context: Record<string, Node>, rootfsTree: Record<string, Node> = {}) {
  const ctx = await tempDir();
  const rootfs = await tempDir('stratum-rootfs-');
  await build(ctx, context);
  await build(rootfs, rootfsTree);
  const root: SourceRoot = { kind: 'context', dir: ctx };
  return { ctx, rootfs, root };
}

async function copy(
  context: Record<string, Node>,
  request: Omit<CopyRequest, 'root'>,
  options: ApplyOptions = {},
  rootfsTree: Record<string, Node> = {},
) {
  const env = await setup(context, rootfsTree);
  const plan = await planCopy({ ...request, root: env.root });
  await applyCopy(plan, env.rootfs, options);
  return { ...env, plan };
}

/** Lists a tree as "path type mode uid:gid [-> target]" lines, sorted. */
async function listing(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const st = await lstat(path);
    const rel = prefix + name;
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'file';
    const mode = type === 'link' ? '' : ` ${(st.mode & 0o7777).toString(8)}`;
    const target = type === 'link' ? ` -> ${await readlink(path)}` : '';
    out.push(`${rel} ${type}${mode} ${st.uid}:${st.gid}${target}`);
    if (st.isDirectory()) out.push(...(await listing(path, `${rel}/`)));
  }
  return out;
}

describe('COPY: what a source selects', () => {
  it('a directory source copies its contents, not the directory itself', async () => {
    const { rootfs } = await copy(
      { 'src/a.txt': 'a', 'src/sub/b.txt': 'b' },
      { sources: ['src'], dest: '/app' },
    );
    expect(await listing(join(rootfs, 'app'))).toEqual([
      'a.txt file 644 0:0',
      'sub dir 755 0:0',
      'sub/b.txt file 644 0:0',
    ]);
  });

  it('COPY . copies the whole context', async () => {
    const { rootfs } = await copy({ 'a.txt': 'a', 'd/b.txt': 'b' }, { sources: ['.'], dest: '/' });
    expect(await readFile(join(rootfs, 'd/b.txt'), 'utf8')).toBe('b');
    expect(await readFile(join(rootfs, 'a.txt'), 'utf8')).toBe('a');
  });

  it('a file to a destination without a trailing slash becomes that file', async () => {
    const { rootfs } = await copy({ 'a.txt': 'hello' }, { sources: ['a.txt'], dest: '/etc/renamed' });
    expect(await readFile(join(rootfs, 'etc/renamed'), 'utf8')).toBe('hello');
  });

  it('a file to a destination ending in / goes inside it', async () => {
    const { rootfs } = await copy({ 'a.txt': 'hello' }, { sources: ['a.txt'], dest: '/opt/new/' });
    expect(await readFile(join(rootfs, 'opt/new/a.txt'), 'utf8')).toBe('hello');
  });

  it('a single file to an existing directory goes inside it', async () => {
    const { rootfs } = await copy(
      { 'a.txt': 'x' },
      { sources: ['a.txt'], dest: '/srv' },
      {},
      { srv: { dir: true } },
    );
    expect(await readFile(join(rootfs, 'srv/a.txt'), 'utf8')).toBe('x');
  });

  it('a relative destination is relative to WORKDIR; "." is a directory', async () => {
    const { rootfs } = await copy(
      { 'a.txt': 'x', 'b.txt': 'y' },
      { sources: ['a.txt', 'b.txt'], dest: '.', workdir: '/work/dir' },
    );
    expect(await readFile(join(rootfs, 'work/dir/a.txt'), 'utf8')).toBe('x');
    expect(await readFile(join(rootfs, 'work/dir/b.txt'), 'utf8')).toBe('y');
    const rel = await copy({ 'a.txt': 'x' }, { sources: ['a.txt'], dest: 'sub/', workdir: '/w' });
    expect(await readFile(join(rel.rootfs, 'w/sub/a.txt'), 'utf8')).toBe('x');
  });

  it('several sources need a directory destination ending in /', async () => {
    const { root } = await setup({ 'a.txt': 'a', 'b.txt': 'b' });
    await expect(planCopy({ sources: ['a.txt', 'b.txt'], dest: '/x', root })).rejects.toThrow(
      'When using COPY with more than one source file, the destination must be a directory and end with a /',
    );
  });

  it('a wildcard matching several files needs a directory destination; one match may be renamed', async () => {
    const { root } = await setup({ 'a.txt': 'a', 'b.txt': 'b', 'only.md': 'm' });
    await expect(planCopy({ sources: ['*.txt'], dest: '/x', root })).rejects.toThrow(
      /more than one source file/,
    );
    const plan = await planCopy({ sources: ['*.md'], dest: '/readme', root });
    expect(plan.singleFile).toBe(true);
  });

  it('wildcards follow filepath.Match per component, in name order, and may match directories', async () => {
    const { rootfs } = await copy(
      {
        'pkg/a/index.js': 'a',
        'pkg/b/index.js': 'b',
        'pkg/b/other.js': 'o',
        'pkg/c.js': 'c',
        file1: '1',
        file2: '2',
        fileX: 'x',
      },
      { sources: ['pkg/*/index.js', 'file[0-9]'], dest: '/out/' },
    );
    // Both index.js land on the same name: the later match (b) wins.
    expect(await listing(join(rootfs, 'out'))).toEqual([
      'file1 file 644 0:0',
      'file2 file 644 0:0',
      'index.js file 644 0:0',
    ]);
    expect(await readFile(join(rootfs, 'out/index.js'), 'utf8')).toBe('b');
    const dirs = await copy({ 'lib1/x': 'x', 'lib2/y': 'y' }, { sources: ['lib*'], dest: '/l/' });
    expect(await listing(join(dirs.rootfs, 'l'))).toEqual(['x file 644 0:0', 'y file 644 0:0']);
  });

  it('a wildcard matching nothing copies nothing, and alone creates not even the destination (BuildKit)', async () => {
    const { rootfs } = await copy({ 'a.txt': 'a' }, { sources: ['a.txt', '*.none'], dest: '/d/' });
    expect(await readFile(join(rootfs, 'd/a.txt'), 'utf8')).toBe('a');
    const empty = await copy({ 'a.txt': 'a' }, { sources: ['*.none'], dest: '/e/' });
    expect(existsSync(join(empty.rootfs, 'e'))).toBe(false);
    const { root } = await setup({ 'a.txt': 'a' });
    await expect(planCopy({ sources: ['none.txt', '*.none'], dest: '/d/', root })).rejects.toThrow(
      'stat none.txt',
    );
  });

  it('a missing source is a NOT_FOUND error naming it (stat missing.txt)', async () => {
    const { root } = await setup({});
    await expect(planCopy({ sources: ['missing.txt'], dest: '/d/', root })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('COPY failed: file not found in build context'),
    });
  });

  it('--parents keeps the path from the context root, or from a ./ pivot', async () => {
    const { rootfs } = await copy(
      { 'a/b/c.txt': 'c', 'x/y/z.txt': 'z', 'p/q/dir/f': 'f' },
      { sources: ['a/b/c.txt', 'x/./y/z.txt', 'p/q/dir'], dest: '/dst/', parents: true },
    );
    expect(await listing(join(rootfs, 'dst'))).toEqual([
      'a dir 755 0:0',
      'a/b dir 755 0:0',
      'a/b/c.txt file 644 0:0',
      'p dir 755 0:0',
      'p/q dir 755 0:0',
      'p/q/dir dir 755 0:0',
      'p/q/dir/f file 644 0:0',
      'y dir 755 0:0',
      'y/z.txt file 644 0:0',
    ]);
  });

  it('--parents with a wildcard keeps each match path', async () => {
    const { rootfs } = await copy(
      { 'svc/a/package.json': 'a', 'svc/b/package.json': 'b', 'svc/b/src.js': 's' },
      { sources: ['svc/*/package.json'], dest: '/app/', parents: true },
    );
    expect(await readFile(join(rootfs, 'app/svc/a/package.json'), 'utf8')).toBe('a');
    expect(await readFile(join(rootfs, 'app/svc/b/package.json'), 'utf8')).toBe('b');
    await expect(stat(join(rootfs, 'app/svc/b/src.js'))).rejects.toThrow();
  });

  it('--exclude drops matching paths inside directory sources and wildcard matches', async () => {
    const { rootfs } = await copy(
      {
        'src/a.js': 'a',
        'src/README.md': 'r',
        'src/tmp/x': 'x',
        'src/keep/tmp.md': 't',
        'home.txt': 'h',
        'home.md': 'm',
      },
      { sources: ['src', 'hom*'], dest: '/app/', excludes: ['*.md', 'tmp'] },
    );
    expect(await listing(join(rootfs, 'app'))).toEqual([
      'a.js file 644 0:0',
      'home.txt file 644 0:0',
      'keep dir 755 0:0',
      'keep/tmp.md file 644 0:0',
    ]);
  });
});

describe('COPY: what the copies look like', () => {
  it("keeps each source's mode (setuid and sticky included) and mtime", async () => {
    const { rootfs } = await copy(
      {
        'bin/tool': { content: '#!/bin/sh\n', mode: 0o755, mtime: 1_000_000 },
        'bin/suid': { content: 's', mode: 0o4755 },
        private: { content: 'p', mode: 0o600 },
        tmpdir: { dir: true, mode: 0o1777 },
      },
      { sources: ['.'], dest: '/c/' },
    );
    expect(await listing(join(rootfs, 'c'))).toEqual([
      'bin dir 755 0:0',
      'bin/suid file 4755 0:0',
      'bin/tool file 755 0:0',
      'private file 600 0:0',
      'tmpdir dir 1777 0:0',
    ]);
    expect((await stat(join(rootfs, 'c/bin/tool'))).mtimeMs).toBe(1_000_000_000);
  });

  it('creates missing parent directories as 0755 root:root whatever the umask', async () => {
    const old = process.umask(0o077);
    try {
      const { rootfs } = await copy(
        { 'a.txt': { content: 'a', mode: 0o644 } },
        { sources: ['a.txt'], dest: '/deep/er/path/' },
      );
      expect(await listing(rootfs)).toEqual([
        'deep dir 755 0:0',
        'deep/er dir 755 0:0',
        'deep/er/path dir 755 0:0',
        'deep/er/path/a.txt file 644 0:0',
      ]);
    } finally {
      process.umask(old);
    }
  });

  it('--chown applies to copied entries and to directories the copy creates, not to existing ones', async () => {
    const { rootfs } = await copy(
      { 'src/a': 'a', 'src/d/b': 'b' },
      { sources: ['src'], dest: '/opt/app' },
      { chown: { uid: 1000, gid: 1001 } },
      { opt: { dir: true } },
    );
    expect(await listing(rootfs)).toEqual([
      'opt dir 755 0:0',
      'opt/app dir 755 1000:1001',
      'opt/app/a file 644 1000:1001',
      'opt/app/d dir 755 1000:1001',
      'opt/app/d/b file 644 1000:1001',
    ]);
  });

  it('--chmod octal sets every copied entry; symbolic applies to the source mode', async () => {
    const octal = await copy(
      { 'x.sh': { content: 'x', mode: 0o644 } },
      { sources: ['x.sh'], dest: '/x.sh' },
      { chmod: '0755' },
    );
    expect((await stat(join(octal.rootfs, 'x.sh'))).mode & 0o7777).toBe(0o755);
    const symbolic = await copy(
      {
        'd/run': { content: 'r', mode: 0o740 },
        'd/data': { content: 'd', mode: 0o600 },
        'd/sub': { dir: true, mode: 0o700 },
      },
      { sources: ['d'], dest: '/d/' },
      { chmod: 'go+rX,u-w' },
    );
    expect(await listing(join(symbolic.rootfs, 'd'))).toEqual([
      'data file 444 0:0',
      'run file 555 0:0',
      'sub dir 555 0:0',
    ]);
  });

  it('symlinks in the context are copied as symlinks, dangling and absolute ones too', async () => {
    const { rootfs } = await copy(
      {
        'd/target.txt': 't',
        'd/rel': { symlink: 'target.txt' },
        'd/abs': { symlink: '/etc/passwd' },
        'd/dangling': { symlink: 'nope' },
      },
      { sources: ['d'], dest: '/l/' },
    );
    expect(await listing(join(rootfs, 'l'))).toEqual([
      'abs link 0:0 -> /etc/passwd',
      'dangling link 0:0 -> nope',
      'rel link 0:0 -> target.txt',
      'target.txt file 644 0:0',
    ]);
  });

  it('a symlink named as the source itself is followed (inside the context) and keeps its own name', async () => {
    const { rootfs } = await copy(
      { 'real/file.txt': 'content', alias: { symlink: 'real/file.txt' }, dirlink: { symlink: 'real' } },
      { sources: ['alias', 'dirlink'], dest: '/out/' },
    );
    expect(await listing(join(rootfs, 'out'))).toEqual(['alias file 644 0:0', 'file.txt file 644 0:0']);
  });

  it('hard links inside one COPY stay hard links', async () => {
    const env = await setup({ 'h/one': 'same' });
    await link(join(env.ctx, 'h/one'), join(env.ctx, 'h/two'));
    const plan = await planCopy({ sources: ['h'], dest: '/h/', root: env.root });
    await applyCopy(plan, env.rootfs);
    const [a, b] = await Promise.all([stat(join(env.rootfs, 'h/one')), stat(join(env.rootfs, 'h/two'))]);
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2);
  });

  it('overwrites an existing file, and replaces on a type change as Docker does', async () => {
    const { rootfs } = await copy(
      { 'd/file': 'new', 'd/was-dir': 'now a file', 'd/was-file/inside': 'now a dir', 'd/was-link/x': 'x' },
      { sources: ['d'], dest: '/t/' },
      {},
      {
        't/file': 'old',
        't/was-dir/child': 'c',
        't/was-file': 'f',
        't/was-link': { symlink: '/elsewhere' },
      },
    );
    expect(await listing(join(rootfs, 't'))).toEqual([
      'file file 644 0:0',
      'was-dir file 644 0:0',
      'was-file dir 755 0:0',
      'was-file/inside file 644 0:0',
      'was-link dir 755 0:0',
      'was-link/x file 644 0:0',
    ]);
    expect(await readFile(join(rootfs, 't/file'), 'utf8')).toBe('new');
  });

  it('a directory source onto an existing file is an error naming the destination', async () => {
    const env = await setup({ 'd/x': 'x' }, { target: 'file' });
    const plan = await planCopy({ sources: ['d'], dest: '/target', root: env.root });
    await expect(applyCopy(plan, env.rootfs)).rejects.toThrow(/\/target exists and is not a directory/);
  });

  it('--from a rootfs resolves absolute symlinks inside that rootfs and ignores no files', async () => {
    const stage = await tempDir('stratum-stage-');
    await build(stage, {
      'usr/bin/real': { content: 'bin', mode: 0o755 },
      bin: { symlink: '/usr/bin' },
      '.dockerignore': 'x',
    });
    const rootfs = await tempDir('stratum-rootfs-');
    const plan = await planCopy({
      sources: ['/bin/real', '.dockerignore'],
      dest: '/out/',
      root: { kind: 'rootfs', dir: stage, name: 'stage build' },
    });
    await applyCopy(plan, rootfs);
    expect(await listing(join(rootfs, 'out'))).toEqual(['.dockerignore file 644 0:0', 'real file 755 0:0']);
  });

  it('large files (streamed by the kernel, not read into memory) keep content, mode, owner and mtime', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 'x').toString();
    const { rootfs } = await copy(
      { 'big.bin': { content: big, mode: 0o4750, mtime: 1_234_567 }, 'small.txt': 's' },
      { sources: ['big.bin', 'small.txt'], dest: '/b/' },
      { chown: { uid: 5, gid: 6 } },
    );
    const st = await stat(join(rootfs, 'b/big.bin'));
    expect([st.size, st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([
      big.length,
      0o4750,
      5,
      6,
      1_234_567_000,
    ]);
    expect((await readFile(join(rootfs, 'b/big.bin'), 'utf8')) === big).toBe(true);
  });

  it('keeps mtimes of copied directories', async () => {
    const env = await setup({ 'd/sub/f': 'f' });
    await utimes(join(env.ctx, 'd/sub'), 2_000_000, 2_000_000);
    const plan = await planCopy({ sources: ['d'], dest: '/d/', root: env.root });
    await applyCopy(plan, env.rootfs);
    expect((await stat(join(env.rootfs, 'd/sub'))).mtimeMs).toBe(2_000_000_000);
  });
});
