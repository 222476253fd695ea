import { readdirSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, requireTool } from '../../helpers/system.js';
import { baseSpec, makeBusyboxRootfs, makeTempDir } from './fixtures.js';
import { capture, tools } from './run-helpers.js';

const ready = tools.every(([command, pkg]) => requireTool(command, pkg));

describe.skipIf(!ready || !isRoot)('RUN isolation (as root)', () => {
  let dir: string;
  let rootfs: string;
  beforeAll(() => {
    dir = makeTempDir('stratum-iso-');
    rootfs = makeBusyboxRootfs(dir, { full: true });
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('the step has its own hostname and /etc/hosts, /etc/resolv.conf, /etc/hostname from the spec', async () => {
    const run = await capture(
      baseSpec(rootfs, ['sh', '-c', 'hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf'], {
        hostname: 'buildbox',
        etcHostname: 'buildbox\n',
        etcHosts: '10.9.8.7 special\n',
        etcResolvConf: 'nameserver 192.0.2.1\n',
      }),
    );
    expect(run).toMatchObject({
      exitCode: 0,
      stdout: 'buildbox\nbuildbox\n10.9.8.7 special\nnameserver 192.0.2.1\n',
    });
  });

  it('the command is PID 1 of a fresh PID namespace and sees no host process', async () => {
    const run = await capture(
      baseSpec(rootfs, [
        'sh',
        '-c',
        'echo $$; for p in /proc/[0-9]*; do cat $p/cmdline | tr "\\0" " "; echo; done',
      ]),
    );
    expect(run.exitCode).toBe(0);
    const [pid, ...cmdlines] = run.stdout.trim().split('\n');
    expect(pid).toBe('1');
    expect(cmdlines.length).toBeLessThanOrEqual(4); // sh, its loop's subshells
    expect(run.stdout).not.toMatch(/node|vitest|unshare|perl/);
  });

  it('/proc is mounted fresh and /sys read-only, and /dev holds exactly the minimal nodes', async () => {
    const script = [
      'grep -E " /(proc|sys|dev) " /proc/mounts | cut -d" " -f2,3,4 | cut -d, -f1',
      'touch /sys/x 2>/dev/null && echo sys-writable || echo sys-readonly',
      'for n in null zero full random urandom tty; do test -c /dev/$n && echo "c $n"; done',
      'test -d /dev/pts && test -d /dev/shm && test -L /dev/ptmx && echo pts-shm',
      'echo hello > /dev/null && head -c 4 /dev/zero | od -An -tx1 | tr -d " "',
      'echo x > /dev/shm/f && cat /dev/shm/f',
      'ls /dev | sort | tr "\\n" " "',
    ].join('; ');
    const run = await capture(baseSpec(rootfs, ['sh', '-c', script]));
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(
      [
        '/proc proc rw',
        '/dev tmpfs rw',
        '/sys sysfs ro',
        'sys-readonly',
        'c null',
        'c zero',
        'c full',
        'c random',
        'c urandom',
        'c tty',
        'pts-shm',
        '00000000',
        'x',
        'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ',
      ].join('\n'),
    );
  });

  it('env, cwd, uid, gid and supplementary groups are applied exactly', async () => {
    const run = await capture(
      baseSpec(rootfs, ['sh', '-c', 'id -u; id -g; id -G; pwd; env | sort'], {
        env: ['PATH=/bin', 'FOO=bar baz', 'EMPTY='],
        cwd: '/home/app',
        uid: 1000,
        gid: 1000,
        additionalGids: [10, 29],
      }),
    );
    expect(run.exitCode).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual(['1000', '1000', '1000 10 29', '/home/app']);
    // sh adds PWD and SHLVL; nothing of the host's environment leaks in.
    expect(lines.slice(4)).toEqual(['EMPTY=', 'FOO=bar baz', 'PATH=/bin', 'PWD=/home/app', 'SHLVL=1']);
  });

  it("a non-root step has no capabilities; root gets Docker's default set, not all", async () => {
    const root = await capture(baseSpec(rootfs, ['sh', '-c', 'grep CapEff /proc/self/status']));
    expect(root.stdout.trim()).toBe('CapEff:\t00000000a80425fb');
    const app = await capture(
      baseSpec(rootfs, ['sh', '-c', 'grep CapEff /proc/self/status'], { uid: 1000, gid: 1000 }),
    );
    expect(app.stdout.trim()).toBe('CapEff:\t0000000000000000');
  });

  it("argv[0] is looked up in the step's own PATH, and stdin is /dev/null", async () => {
    const run = await capture(baseSpec(rootfs, ['cat'], { env: ['PATH=/nowhere:/bin'] }));
    expect(run).toMatchObject({ exitCode: 0, stdout: '' });
  });

  it('network none leaves only a loopback that is up; host network sees the host interfaces', async () => {
    const none = await capture(
      baseSpec(
        rootfs,
        ['sh', '-c', 'ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags'],
        { network: 'none' },
      ),
    );
    const lines = none.stdout.trim().split('\n');
    expect(lines[0]).toBe('lo');
    expect(lines).toHaveLength(3);
    expect(Number(lines[2]) & 1).toBe(1); // IFF_UP
    const host = await capture(baseSpec(rootfs, ['ls', '/sys/class/net'], { network: 'host' }));
    expect(host.stdout.trim().split('\n')).toEqual(readdirSync('/sys/class/net').sort());
  });
});
