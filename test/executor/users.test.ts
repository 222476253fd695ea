import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveChown, resolveUser } from '../../src/executor/users.js';

const passwd = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  'app:x:1000:1001:App:/home/app:/bin/sh',
  'nohome:x:1002:1002::',
  '',
  '  svc:x:1003:1003:svc:/srv:/bin/sh  ',
  'app:x:2000:2000:duplicate:/dup:/bin/sh',
].join('\n');
const group = [
  'root:x:0:',
  'wheel:x:10:root,app',
  'audio:x:29:app',
  'appgrp:x:1001:',
  'app:x:1500:',
  'staff:x:50:svc',
].join('\n');

describe("USER and --chown resolve through the image's /etc/passwd and /etc/group", () => {
  let dir: string;
  let rootfs: string;
  let bare: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-users-'));
    rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'etc'), { recursive: true });
    writeFileSync(join(rootfs, 'etc', 'passwd'), passwd);
    writeFileSync(join(rootfs, 'etc', 'group'), group);
    bare = join(dir, 'bare');
    mkdirSync(bare);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a name gives the passwd uid, gid and home, and its primary group plus the groups that list the name (Docker 20.10)', async () => {
    expect(await resolveUser(rootfs, 'app')).toEqual({
      uid: 1000,
      gid: 1001,
      additionalGids: [1001, 10, 29],
      home: '/home/app',
    });
  });

  it('the first passwd entry wins, and lines are trimmed as runc does', async () => {
    expect((await resolveUser(rootfs, 'app')).home).toBe('/home/app');
    expect(await resolveUser(rootfs, 'svc')).toEqual({
      uid: 1003,
      gid: 1003,
      additionalGids: [1003, 50],
      home: '/srv',
    });
  });

  it('a number is a uid, looked up for gid, home and groups; unknown numbers get gid 0 and HOME /', async () => {
    expect(await resolveUser(rootfs, '1000')).toEqual({
      uid: 1000,
      gid: 1001,
      additionalGids: [1001, 10, 29],
      home: '/home/app',
    });
    expect(await resolveUser(rootfs, '4242')).toEqual({ uid: 4242, gid: 0, additionalGids: [0], home: '/' });
    expect(await resolveUser(bare, '4242')).toEqual({ uid: 4242, gid: 0, additionalGids: [0], home: '/' });
  });

  it('an explicit group replaces the gid; the supplementary groups are then that gid alone (moby getUser)', async () => {
    expect(await resolveUser(rootfs, 'app:audio')).toEqual({
      uid: 1000,
      gid: 29,
      additionalGids: [29],
      home: '/home/app',
    });
    expect(await resolveUser(rootfs, 'app:77')).toEqual({
      uid: 1000,
      gid: 77,
      additionalGids: [77],
      home: '/home/app',
    });
    expect(await resolveUser(rootfs, '4242:4343')).toEqual({
      uid: 4242,
      gid: 4343,
      additionalGids: [4343],
      home: '/',
    });
  });

  it("the empty spec and root are uid 0 with root's home and groups", async () => {
    expect(await resolveUser(rootfs, '')).toEqual({ uid: 0, gid: 0, additionalGids: [0, 10], home: '/root' });
    expect(await resolveUser(rootfs, 'root')).toEqual({
      uid: 0,
      gid: 0,
      additionalGids: [0, 10],
      home: '/root',
    });
    expect(await resolveUser(bare, '')).toEqual({ uid: 0, gid: 0, additionalGids: [0], home: '/' });
    // Without a passwd file even "root" is an unknown name, as in Docker.
    await expect(resolveUser(bare, 'root')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('an empty home field stays empty, as runc leaves it', async () => {
    expect((await resolveUser(rootfs, 'nohome')).home).toBe('');
  });

  it('an unknown name is an error naming the user; an unknown group name too', async () => {
    await expect(resolveUser(rootfs, 'ghost')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('ghost'),
    });
    await expect(resolveUser(bare, 'app')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('app'),
    });
    await expect(resolveUser(rootfs, 'app:ghosts')).rejects.toMatchObject({
      message: expect.stringContaining('ghosts'),
    });
  });

  it('supplementary groups as current BuildKit gives them (moby/buildkit#3651): the primary gid first unless a listed group', async () => {
    const listed = join(dir, 'listed');
    mkdirSync(join(listed, 'etc'), { recursive: true });
    writeFileSync(join(listed, 'etc', 'passwd'), 'ops:x:1100:60::/ops:/bin/sh\n');
    writeFileSync(join(listed, 'etc', 'group'), 'adm:x:4:ops\nops:x:60:ops\n');
    expect(await resolveUser(listed, 'ops')).toMatchObject({ gid: 60, additionalGids: [4, 60] });
    writeFileSync(join(listed, 'etc', 'group'), 'adm:x:4:ops\nops:x:60:\n');
    expect(await resolveUser(listed, 'ops')).toMatchObject({ gid: 60, additionalGids: [60, 4] });
    expect(await resolveUser(listed, '1100:4')).toMatchObject({ gid: 4, additionalGids: [4] });
  });

  it('ids outside 0..2^31-1 are refused', async () => {
    await expect(resolveUser(rootfs, '-1')).rejects.toMatchObject({ code: 'BUILD_FAILED' });
    await expect(resolveUser(rootfs, '0:4294967296')).rejects.toMatchObject({ code: 'BUILD_FAILED' });
  });

  it('a symlinked /etc/passwd that points outside the rootfs is read inside it, never from the host', async () => {
    const hostile = join(dir, 'hostile');
    const outside = join(dir, 'outside-etc');
    mkdirSync(join(hostile, 'etc'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
    // Absolute link and a ../ escape: both must resolve under the rootfs, where no passwd exists.
    symlinkSync(join(outside, 'passwd'), join(hostile, 'etc', 'passwd'));
    symlinkSync('../../../../../../../../outside-etc/group', join(hostile, 'etc', 'group'));
    await expect(resolveUser(hostile, 'evil')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A link that stays inside the rootfs is followed, as the kernel would after chroot.
    mkdirSync(join(hostile, 'data'));
    writeFileSync(join(hostile, 'data', 'passwd'), 'inside:x:7:8::/in:/bin/sh\n');
    rmSync(join(hostile, 'etc', 'passwd'));
    symlinkSync('/data/passwd', join(hostile, 'etc', 'passwd'));
    expect(await resolveUser(hostile, 'inside')).toMatchObject({ uid: 7, gid: 8, home: '/in' });
  });

  it('an /etc/passwd that is not a regular file is refused', async () => {
    const odd = join(dir, 'odd');
    mkdirSync(join(odd, 'etc', 'passwd'), { recursive: true });
    await expect(resolveUser(odd, 'x')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('--chown as BuildKit reads it: a number is also the gid, a named user alone gets its passwd gid', async () => {
    expect(await resolveChown(rootfs, '10')).toEqual({ uid: 10, gid: 10 });
    expect(await resolveChown(rootfs, '10:20')).toEqual({ uid: 10, gid: 20 });
    expect(await resolveChown(rootfs, 'app:audio')).toEqual({ uid: 1000, gid: 29 });
    expect(await resolveChown(rootfs, 'app:7')).toEqual({ uid: 1000, gid: 7 });
    expect(await resolveChown(rootfs, '5:audio')).toEqual({ uid: 5, gid: 29 });
    // app's primary gid (1001), not the group named app (1500) as moby's classic builder took
    expect(await resolveChown(rootfs, 'app')).toEqual({ uid: 1000, gid: 1001 });
    expect(await resolveChown(rootfs, 'svc')).toEqual({ uid: 1003, gid: 1003 });
  });

  it('--chown names that are not in the image read as BuildKit reads them: user 0:0, group left as it was', async () => {
    expect(await resolveChown(rootfs, 'ghost')).toEqual({ uid: 0, gid: 0 });
    expect(await resolveChown(rootfs, 'app:ghosts')).toEqual({ uid: 1000, gid: 1001 });
    expect(await resolveChown(rootfs, 'app:')).toEqual({ uid: 1000, gid: 1001 });
    expect(await resolveChown(join(dir, 'no-such-rootfs'), 'app')).toEqual({ uid: 0, gid: 0 });
  });

  it('--chown refuses malformed specs and ids out of range', async () => {
    await expect(resolveChown(rootfs, 'a:b:c')).rejects.toMatchObject({ code: 'BUILD_FAILED' });
    await expect(resolveChown(rootfs, '')).rejects.toMatchObject({ code: 'BUILD_FAILED' });
    await expect(resolveChown(rootfs, '0:4294967296')).rejects.toMatchObject({ code: 'BUILD_FAILED' });
  });
});
