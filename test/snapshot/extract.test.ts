import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { extractLayer, extractLayerAuto } from '../../src/snapshot/extract.js';
import { isRoot } from '../helpers/system.js';
import {
  buildTar,
  dir,
  file,
  hardlinkEntry,
  removeAll,
  streamOf,
  symlinkEntry,
  tempDir,
  type RawEntry,
} from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});
async function newDir(): Promise<string> {
  const d = await tempDir('stratum-extract-');
  dirs.push(d);
  return d;
}

async function apply(target: string, entries: readonly RawEntry[], layerName = 'sha256:test'): Promise<void> {
  await extractLayer(streamOf(buildTar(entries)), target, { layerName });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A lower layer most tests start from. */
async function lower(target: string): Promise<void> {
  await apply(target, [
    dir('etc/'),
    file('etc/passwd', 'root\n'),
    dir('etc/conf.d/'),
    file('etc/conf.d/a', 'a'),
    file('etc/conf.d/b', 'b'),
    dir('etc/conf.d/sub/'),
    file('etc/conf.d/sub/c', 'c'),
    dir('usr/'),
    file('usr/file-then-dir', 'f'),
    dir('usr/dir-then-file/'),
    file('usr/dir-then-file/inner', 'i'),
  ]);
}

describe('layer extraction', () => {
  it('whiteouts remove the lower file and a lower subtree', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [
      dir('etc/'),
      file('etc/.wh.passwd', ''),
      dir('etc/conf.d/'),
      file('etc/conf.d/.wh.sub', ''),
    ]);
    expect(await exists(join(t, 'etc/passwd'))).toBe(false);
    expect(await exists(join(t, 'etc/conf.d/sub'))).toBe(false);
    expect(await exists(join(t, 'etc/conf.d/a'))).toBe(true);
    expect(await exists(join(t, 'etc/conf.d/.wh.sub'))).toBe(false);
  });

  it('an opaque whiteout applies before everything else in its layer, even as the last entry', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [
      dir('etc/conf.d/'),
      file('etc/conf.d/new', 'n'),
      dir('etc/conf.d/sub/'),
      file('etc/conf.d/sub/new2', 'n2'),
      file('etc/conf.d/.wh..wh..opq', ''),
    ]);
    expect((await readdir(join(t, 'etc/conf.d'))).sort()).toEqual(['new', 'sub']);
    expect(await readdir(join(t, 'etc/conf.d/sub'))).toEqual(['new2']);
    expect(await exists(join(t, 'etc/passwd'))).toBe(true);
  });

  it("an opaque whiteout keeps this layer's entries below it, also under parents the layer did not list", async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [file('etc/conf.d/sub/mine', 'm'), file('etc/.wh..wh..opq', '')]);
    expect(await readdir(join(t, 'etc'))).toEqual(['conf.d']);
    expect(await readdir(join(t, 'etc/conf.d'))).toEqual(['sub']);
    expect(await readdir(join(t, 'etc/conf.d/sub'))).toEqual(['mine']);
  });

  it('an opaque whiteout is matched exactly: ".wh..wh..opqx" is an ordinary whiteout, not opaque', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [dir('etc/conf.d/'), file('etc/conf.d/.wh..wh..opqx', '')]);
    expect((await readdir(join(t, 'etc/conf.d'))).sort()).toEqual(['a', 'b', 'sub']);
  });

  it('a whiteout after a same-layer entry hides only what the lower layers had there', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [dir('etc/conf.d/'), file('etc/conf.d/mine', 'm'), file('etc/.wh.conf.d', '')]);
    expect(await readdir(join(t, 'etc/conf.d'))).toEqual(['mine']);
  });

  it('a file replaced by a directory and a directory by a file, with or without a whiteout', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [
      dir('usr/'),
      file('usr/dir-then-file', 'now a file'),
      dir('usr/file-then-dir/'),
      file('usr/file-then-dir/x', 'x'),
    ]);
    expect(await readFile(join(t, 'usr/dir-then-file'), 'utf8')).toBe('now a file');
    expect(await readFile(join(t, 'usr/file-then-dir/x'), 'utf8')).toBe('x');
    const t2 = await newDir();
    await lower(t2);
    await apply(t2, [
      dir('usr/'),
      file('usr/.wh.dir-then-file', ''),
      file('usr/.wh.file-then-dir', ''),
      file('usr/dir-then-file', 'now a file'),
      dir('usr/file-then-dir/'),
    ]);
    expect((await lstat(join(t2, 'usr/dir-then-file'))).isFile()).toBe(true);
    expect((await lstat(join(t2, 'usr/file-then-dir'))).isDirectory()).toBe(true);
  });

  it('hard links to a file of this layer and of a lower layer share the inode', async () => {
    const t = await newDir();
    await lower(t);
    await apply(t, [
      dir('bin/'),
      file('bin/busybox', 'bb'),
      hardlinkEntry('bin/sh', 'bin/busybox'),
      hardlinkEntry('bin/pw', 'etc/passwd'),
    ]);
    expect((await stat(join(t, 'bin/sh'))).ino).toBe((await stat(join(t, 'bin/busybox'))).ino);
    expect((await stat(join(t, 'bin/pw'))).ino).toBe((await stat(join(t, 'etc/passwd'))).ino);
  });

  it('symlinks, modes (setuid after chown), owners and mtimes (directories after their contents)', async () => {
    const t = await newDir();
    await apply(t, [
      dir('opt/', { mode: 0o750, uid: 7, gid: 8, mtime: 1_500_000_000 }),
      file('opt/suid', '#!', { mode: 0o4755, uid: 1000, gid: 1000, mtime: 1_400_000_000 }),
      symlinkEntry('opt/link', '/nowhere/at/all'),
      dir('tmp/', { mode: 0o1777 }),
    ]);
    const suid = await lstat(join(t, 'opt/suid'));
    expect(suid.mode & 0o7777).toBe(0o4755);
    expect(suid.mtimeMs).toBe(1_400_000_000_000);
    expect(await readlink(join(t, 'opt/link'))).toBe('/nowhere/at/all');
    expect((await lstat(join(t, 'opt/link'))).mtimeMs).toBe(1_700_000_000_000);
    const opt = await lstat(join(t, 'opt'));
    expect(opt.mode & 0o7777).toBe(0o750);
    expect(opt.mtimeMs).toBe(1_500_000_000_000);
    expect((await lstat(join(t, 'tmp'))).mode & 0o7777).toBe(0o1777);
    if (isRoot) {
      expect([suid.uid, suid.gid]).toEqual([1000, 1000]);
      expect([opt.uid, opt.gid]).toEqual([7, 8]);
    }
  });

  it.runIf(isRoot)('device nodes and fifos', async () => {
    const t = await newDir();
    await apply(t, [
      dir('dev/'),
      {
        header: {
          name: 'dev/null',
          type: 'char',
          mode: 0o666,
          uid: 0,
          gid: 0,
          size: 0,
          mtime: 0,
          devMajor: 1,
          devMinor: 3,
        },
      },
      { header: { name: 'dev/fifo', type: 'fifo', mode: 0o640, uid: 0, gid: 0, size: 0, mtime: 0 } },
    ]);
    const nul = await lstat(join(t, 'dev/null'));
    expect(nul.isCharacterDevice()).toBe(true);
    expect(nul.rdev).toBe(259);
    expect(nul.mode & 0o7777).toBe(0o666);
    expect((await lstat(join(t, 'dev/fifo'))).isFIFO()).toBe(true);
  });

  it('extractLayerAuto tells gzip from plain tar by its magic bytes', async () => {
    const t = await newDir();
    const tarBytes = buildTar([file('plain', 'p')]);
    await extractLayerAuto(streamOf(gzipSync(tarBytes)), t);
    await extractLayerAuto(streamOf(buildTar([file('second', 's')])), t);
    expect((await readdir(t)).sort()).toEqual(['plain', 'second']);
  });

  it('a truncated tar is an INVALID_IMAGE error naming the layer', async () => {
    const t = await newDir();
    const bytes = buildTar([file('big', 'x'.repeat(5000))]).subarray(0, 2048);
    await expect(extractLayer(streamOf(bytes), t, { layerName: 'layer.tar' })).rejects.toThrow(/layer\.tar/);
  });
});

/** Each hostile layer is built byte by byte; none may write outside the target. */
describe('hostile layers never write outside the target', () => {
  async function setup(): Promise<{ root: string; target: string; outside: string }> {
    const root = await newDir();
    const target = join(root, 'rootfs');
    const outside = join(root, 'outside');
    await mkdir(target);
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'untouched');
    return { root, target, outside };
  }
  async function expectOutsideUntouched(outside: string): Promise<void> {
    expect(await readdir(outside)).toEqual(['secret']);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('untouched');
  }
  async function expectRefused(target: string, entries: RawEntry[], entryName: string): Promise<void> {
    const error = await extractLayer(streamOf(buildTar(entries)), target, { layerName: 'sha256:evil' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StratumError);
    expect((error as StratumError).code).toBe('UNSAFE_PATH');
    expect((error as StratumError).message).toContain('sha256:evil');
    expect((error as StratumError).message).toContain(entryName);
  }

  it('dot-dot traversal in a name ("../outside/secret") is refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(target, [file('../outside/secret', 'pwned')], '../outside/secret');
    await expectRefused(target, [file('a/../../outside/secret', 'pwned')], 'a/../../outside/secret');
    await expectOutsideUntouched(outside);
  });

  it('an absolute name ("/outside/secret") is refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(target, [file(`${outside}/secret`, 'pwned')], `${outside}/secret`);
    await expectOutsideUntouched(outside);
  });

  it('a relative symlink parent climbing out ("up -> ../../.." then "up/outside/secret") is refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(
      target,
      [symlinkEntry('up', '../../..'), file('up/outside/secret', 'pwned')],
      'up/outside/secret',
    );
    await expectOutsideUntouched(outside);
  });

  it('an absolute symlink parent ("abs -> /outside") resolves inside the root, chroot-style', async () => {
    const { target, outside } = await setup();
    await extractLayer(
      streamOf(buildTar([symlinkEntry('abs', outside), file('abs/secret', 'inside')])),
      target,
    );
    await expectOutsideUntouched(outside);
    expect(await readFile(join(target, outside, 'secret'), 'utf8')).toBe('inside');
  });

  it('a symlink parent from a lower layer pointing outside is followed only inside the root', async () => {
    const { target, outside } = await setup();
    await symlink(outside, join(target, 'lower-link'));
    await extractLayer(streamOf(buildTar([file('lower-link/secret', 'inside')])), target);
    await expectOutsideUntouched(outside);
    await symlink('../outside', join(target, 'lower-rel'));
    await expectRefused(target, [file('lower-rel/secret', 'pwned')], 'lower-rel/secret');
    await expectOutsideUntouched(outside);
  });

  it('a directory swapped for an escaping symlink mid-layer is not written through', async () => {
    const { target, outside } = await setup();
    await expectRefused(
      target,
      [dir('swap/'), file('swap/one', '1'), symlinkEntry('swap', '../outside'), file('swap/secret', 'pwned')],
      'swap/secret',
    );
    await expectOutsideUntouched(outside);
  });

  it('a file entry over a symlink that points outside replaces the symlink, never follows it', async () => {
    const { target, outside } = await setup();
    await symlink(join(outside, 'secret'), join(target, 'passwd'));
    await extractLayer(streamOf(buildTar([file('passwd', 'replaced')])), target);
    await expectOutsideUntouched(outside);
    expect((await lstat(join(target, 'passwd'))).isFile()).toBe(true);
  });

  it('a hard link to a path outside ("../outside/secret") is refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(target, [hardlinkEntry('grab', '../outside/secret')], 'grab');
    await expectOutsideUntouched(outside);
  });

  it('a hard link through an escaping symlink parent is refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(
      target,
      [symlinkEntry('up', '../..'), hardlinkEntry('grab', 'up/outside/secret')],
      'grab',
    );
    await expectOutsideUntouched(outside);
    expect(await exists(join(target, 'grab'))).toBe(false);
  });

  it('whiteouts of "." or ".." are refused', async () => {
    const { target, outside } = await setup();
    await expectRefused(target, [file('.wh..', '')], '.wh..');
    await expectRefused(target, [file('a/.wh...', '')], 'a/.wh...');
    await expectOutsideUntouched(outside);
  });

  it('GNU tar cannot sneak a ".." in either (cross-check with a tar made by tar -P)', async () => {
    const { root, target, outside } = await setup();
    execFileSync('tar', ['-P', '-cf', join(root, 'evil.tar'), `${target}/../outside/secret`]);
    const data = await readFile(join(root, 'evil.tar'));
    await expect(extractLayer(streamOf(data), target)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    await expectOutsideUntouched(outside);
  });
});
