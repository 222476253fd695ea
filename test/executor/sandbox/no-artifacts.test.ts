import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runInSandbox, type SandboxMount } from '../../../src/executor/sandbox/index.js';
import { isRoot, requireTool } from '../../helpers/system.js';
import { baseSpec, hostMountsOf, listTree, makeBusyboxRootfs, makeTempDir } from './fixtures.js';
import { capture, tools } from './run-helpers.js';

const ready = tools.every(([command, pkg]) => requireTool(command, pkg));

/** Sleep past the filesystem's timestamp granularity so that any touched mtime would differ. */
const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

describe.skipIf(!ready || !isRoot)('RUN leaves nothing of its own in the rootfs or the host', () => {
  let dir: string;
  beforeEach(() => {
    dir = makeTempDir('stratum-art-');
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a `true` step leaves every lstat field of the rootfs as it was (full base)', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: true });
    const before = listTree(rootfs);
    const beforeWithCtime = listTree(rootfs, { withCtime: true });
    await tick();
    expect(await runInSandbox(baseSpec(rootfs, ['true']))).toEqual({ exitCode: 0 });
    expect(listTree(rootfs)).toEqual(before);
    expect(hostMountsOf(dir)).toEqual([]);
    // Every mount point existed, so nothing was created: not even a ctime changed.
    expect(listTree(rootfs, { withCtime: true })).toEqual(beforeWithCtime);
  });

  it("while the step runs, none of its mounts is visible in the host's mount namespace", async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: true });
    let output = '';
    let seen: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (seen = resolve));
    const running = runInSandbox(
      baseSpec(rootfs, ['sh', '-c', 'grep -c " /proc \\| /dev \\| /sys " /proc/mounts; sleep 1']),
      {
        onOutput: (chunk) => {
          output += chunk.toString();
          seen();
        },
      },
    );
    await started; // the step's mounts are all in place now
    expect(hostMountsOf(dir)).toEqual([]);
    expect(await running).toEqual({ exitCode: 0 });
    expect(output).toBe('3\n');
  });

  it('a base without /etc, /proc, /dev, /sys gets them for the step and loses them after, parent mtimes exact', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: false });
    const before = listTree(rootfs);
    await tick();
    const run = await capture(
      baseSpec(rootfs, ['sh', '-c', 'ls -d /proc/self /dev/null /sys/kernel /etc/hosts']),
    );
    expect(run.stdout).toBe('/dev/null\n/etc/hosts\n/proc/self\n/sys/kernel\n');
    expect(listTree(rootfs)).toEqual(before);
    expect(hostMountsOf(dir)).toEqual([]);
  });

  it('an aborted step on a bare base also leaves the rootfs as it was', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: false });
    const before = listTree(rootfs);
    const controller = new AbortController();
    let seen: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (seen = resolve));
    const running = runInSandbox(
      baseSpec(rootfs, ['sh', '-c', 'echo up; sleep 100 & sleep 100'], {
        mounts: [{ kind: 'tmpfs', target: '/t/x' }],
      }),
      {
        signal: controller.signal,
        onOutput: () => {
          seen();
        },
      },
    );
    await started;
    controller.abort();
    await expect(running).rejects.toMatchObject({ code: 'ABORTED' });
    expect(listTree(rootfs)).toEqual(before);
    expect(hostMountsOf(dir)).toEqual([]);
  });

  it('every kind of mount leaves no mount point, no content and no mtime change, also with network none', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: true });
    const cacheDir = join(dir, 'cache');
    mkdirSync(cacheDir);
    const secret = join(dir, 'secret.txt');
    writeFileSync(secret, 's3cr3t');
    const mounts: SandboxMount[] = [
      { kind: 'bind', source: cacheDir, target: '/var/cache/apt/archives', readonly: false },
      { kind: 'tmpfs', target: '/scratch/tmp', size: 1 << 20 },
      { kind: 'secret', content: readFileSync(secret), target: '/run/secrets/token' },
      { kind: 'bind', source: secret, target: '/opt/conf/file.txt', readonly: true },
    ];
    const before = listTree(rootfs);
    await tick();
    const run = await capture(
      baseSpec(
        rootfs,
        [
          'sh',
          '-c',
          'echo cached > /var/cache/apt/archives/pkg && echo gone > /scratch/tmp/x && cat /run/secrets/token',
        ],
        { mounts, network: 'none' },
      ),
    );
    expect(run).toMatchObject({ exitCode: 0, stdout: 's3cr3t' });
    expect(listTree(rootfs)).toEqual(before);
    expect(hostMountsOf(dir)).toEqual([]);
    expect(readFileSync(join(cacheDir, 'pkg'), 'utf8')).toBe('cached\n'); // the cache persists outside
  });

  it("with the caller's scratch directory, the step's files go there and nothing else is made", async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: true });
    const parent = join(dir, 'parent');
    const scratchDir = join(dir, 'step-scratch');
    mkdirSync(parent);
    mkdirSync(scratchDir);
    const output: Buffer[] = [];
    const result = await runInSandbox(
      baseSpec(rootfs, ['sh', '-c', 'cat /etc/hostname /run/secrets/token'], {
        mounts: [{ kind: 'secret', content: Buffer.from('pw'), target: '/run/secrets/token' }],
      }),
      { scratchParent: parent, scratchDir, onOutput: (chunk) => void output.push(chunk) },
    );
    expect(result.exitCode).toBe(0);
    expect(Buffer.concat(output).toString()).toBe('stepbox\npw');
    expect(readdirSync(parent)).toEqual([]);
    // Left for the caller to remove; the secret itself lived in the step's own tmpfs.
    expect(readdirSync(scratchDir).sort()).toEqual(['hostname', 'hosts', 'resolv.conf', 'secrets']);
    expect(readdirSync(join(scratchDir, 'secrets'))).toEqual([]);
  });

  it('what the command itself creates stays, with the mtimes the command left', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: false });
    await runInSandbox(baseSpec(rootfs, ['sh', '-c', 'mkdir /etc/made-by-step && sleep 0.2']));
    // /etc was created for the mount points, then the step wrote into it: it stays with the
    // step's entry, the mount points (/etc/hosts ...) are gone, and its mtime is the one the
    // step gave it, not the time of our later removals (0.2 s after).
    const etc = lstatSync(join(rootfs, 'etc'), { bigint: true });
    const made = lstatSync(join(rootfs, 'etc', 'made-by-step'), { bigint: true });
    expect(readdirSync(join(rootfs, 'etc'))).toEqual(['made-by-step']);
    expect(existsSync(join(rootfs, 'proc'))).toBe(false);
    expect(Number(etc.mtimeNs - made.mtimeNs) / 1e6).toBeLessThan(100);
  });

  it('a mount point reached through a symlink in the image is created inside the rootfs, never on the host', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: false });
    const outside = join(dir, 'host-etc');
    mkdirSync(outside);
    symlinkSync(outside, join(rootfs, 'etc')); // absolute link that would point at the host
    const before = listTree(rootfs);
    const run = await capture(baseSpec(rootfs, ['cat', '/etc/hostname'], { etcHostname: 'inside\n' }));
    expect(run.stdout).toBe('inside\n');
    expect(readdirSync(outside)).toEqual([]);
    expect(listTree(rootfs)).toEqual(before);
  });
  it('an /etc/resolv.conf that is a dangling symlink (Ubuntu style) gets its target for the step only', async () => {
    const rootfs = makeBusyboxRootfs(dir, { full: true });
    rmSync(join(rootfs, 'etc', 'resolv.conf'));
    symlinkSync('../run/systemd/resolve/stub-resolv.conf', join(rootfs, 'etc', 'resolv.conf'));
    const before = listTree(rootfs);
    await tick();
    const run = await capture(
      baseSpec(rootfs, ['cat', '/etc/resolv.conf'], { etcResolvConf: 'nameserver 192.0.2.53\n' }),
    );
    expect(run.stdout).toBe('nameserver 192.0.2.53\n');
    expect(listTree(rootfs)).toEqual(before);
  });
});

describe.skipIf(!ready || !isRoot)('RUN mounts', () => {
  let dir: string;
  let rootfs: string;
  beforeEach(() => {
    dir = makeTempDir('stratum-mnt-');
    rootfs = makeBusyboxRootfs(dir, { full: true });
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a read-only bind cannot be written; a read-write bind writes through to its source', async () => {
    const ro = join(dir, 'ro');
    const rw = join(dir, 'rw');
    mkdirSync(ro);
    mkdirSync(rw);
    const run = await capture(
      baseSpec(
        rootfs,
        ['sh', '-c', 'echo a > /ro/f 2>/dev/null && echo ro-writable; echo b > /rw/f && echo rw-ok'],
        {
          mounts: [
            { kind: 'bind', source: ro, target: '/ro', readonly: true },
            { kind: 'bind', source: rw, target: '/rw', readonly: false },
          ],
        },
      ),
    );
    expect(run.stdout).toBe('rw-ok\n');
    expect(existsSync(join(ro, 'f'))).toBe(false);
    expect(readFileSync(join(rw, 'f'), 'utf8')).toBe('b\n');
  });

  it('a secret is a read-only file at its target with mode 0400 root by default, or the mode and owner asked for', async () => {
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'pw', { mode: 0o644 });
    const run = await capture(
      baseSpec(
        rootfs,
        ['sh', '-c', 'stat -c "%a %u %g" /run/secrets/a /run/secrets/b; echo x > /run/secrets/a || echo ro'],
        {
          mounts: [
            { kind: 'secret', content: readFileSync(secret), target: '/run/secrets/a' },
            {
              kind: 'secret',
              content: readFileSync(secret),
              target: '/run/secrets/b',
              mode: 0o440,
              uid: 1000,
              gid: 29,
            },
          ],
        },
      ),
    );
    expect(run.stdout).toBe('400 0 0\n440 1000 29\nro\n');
    expect(readFileSync(secret, 'utf8')).toBe('pw');
    expect(existsSync(join(rootfs, 'run', 'secrets'))).toBe(false);
  });

  it('a tmpfs mount starts empty, holds writes for the step only, and honours its size', async () => {
    mkdirSync(join(rootfs, 'work'));
    writeFileSync(join(rootfs, 'work', 'hidden'), 'base');
    const run = await capture(
      baseSpec(
        rootfs,
        ['sh', '-c', 'ls -A /work; echo t > /work/new; df -k /work | tail -1 | tr -s " " | cut -d" " -f2'],
        {
          mounts: [{ kind: 'tmpfs', target: '/work', size: 2 * 1024 * 1024 }],
        },
      ),
    );
    expect(run.stdout).toBe('2048\n');
    expect(existsSync(join(rootfs, 'work', 'new'))).toBe(false);
    expect(readFileSync(join(rootfs, 'work', 'hidden'), 'utf8')).toBe('base');
  });

  it('a mount target inside another mount is refused with a clear error', async () => {
    await expect(
      runInSandbox(baseSpec(rootfs, ['true'], { mounts: [{ kind: 'tmpfs', target: '/dev/extra' }] })),
    ).rejects.toMatchObject({ code: 'UNSUPPORTED', message: expect.stringContaining('/dev') });
  });
});
