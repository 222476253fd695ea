import { execFileSync, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import {
  MARKER,
  deviceNumbers,
  parseProbes,
  probeScript,
  probeSource,
} from '../../examples/sandbox-probes.js';
import { holdSubordinateIdsLock, isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

interface Mode {
  readonly name: string;
  /** The command that runs stratum (node is appended). */
  readonly prefix: readonly string[];
}

const modes: readonly Mode[] = [
  { name: 'as root', prefix: [] },
  {
    name: 'as root without CAP_SYS_ADMIN',
    prefix: ['setpriv', '--inh-caps=-sys_admin', '--bounding-set=-sys_admin'],
  },
  { name: 'rootless (as nobody)', prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] },
];

/**
 * The floor of issue 27: a RUN step is at least as confined as a container under Docker's
 * default spec. Every probe runs as root and as USER 65534, on both snapshotters, with stratum
 * run as root, as root without CAP_SYS_ADMIN, and rootless. The host device is a loop device over
 * a scratch file holding MARKER; a step must never read MARKER through it.
 */
const ready =
  isRoot &&
  requireTool('losetup', 'mount') &&
  requireTool('gcc', 'gcc') &&
  requireTool('unshare', 'util-linux');

describe.skipIf(!ready)('a Dockerfile never reaches the host through RUN', () => {
  // Rootless USER 65534 needs a subordinate range for nobody; /etc/subuid is the machine's.
  holdSubordinateIdsLock();
  const idFiles = ['/etc/subuid', '/etc/subgid'];
  const savedIdFiles = new Map<string, string | undefined>();
  let dir: string;
  let loop: string | undefined;
  const outcomes = new Map<string, Map<string, string>>();

  beforeAll(() => {
    requireTool('newuidmap', 'uidmap');
    for (const file of idFiles) {
      savedIdFiles.set(file, existsSync(file) ? readFileSync(file, 'utf8') : undefined);
      appendFileSync(file, 'nobody:400000:65536\n');
    }
    dir = mkdtempSync(join(tmpdir(), 'stratum-attacks-'));
    chmodSync(dir, 0o777);
    const disk = join(dir, 'disk.img');
    const content = Buffer.alloc(1 << 20);
    content.write(MARKER);
    writeFileSync(disk, content);
    loop = execFileSync('losetup', ['-f', '--show', disk], { encoding: 'utf8' }).trim();
    const device = statSync(loop).rdev;
    const [major, minor] = deviceNumbers(device);

    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    // A base image that ships a world-readable node for the host's device.
    execFileSync('mknod', ['-m', '0666', join(rootfs, 'host-disk'), 'b', String(major), String(minor)]);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');

    const ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(join(dir, 'probe.c'), probeSource);
    execFileSync('gcc', ['-static', '-O1', '-o', join(ctx, 'probe'), join(dir, 'probe.c')]);
    writeFileSync(join(ctx, 'probe.sh'), probeScript);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        `FROM oci:${join(dir, 'base/layout')}:1`,
        `ENV MAJOR=${major} MINOR=${minor}`,
        'COPY probe probe.sh /',
        'RUN chmod 1777 /tmp && sh /probe.sh',
        'USER 65534',
        'RUN sh /probe.sh',
        '',
      ].join('\n'),
    );
    execFileSync('chmod', ['-R', 'a+rX', dir]);

    for (const mode of modes) {
      for (const snapshotter of ['overlay', 'scan']) {
        const argv = [
          ...mode.prefix,
          process.execPath,
          BIN,
          'build',
          ctx,
          '--network',
          'none',
          '--progress',
          'plain',
          '--snapshotter',
          snapshotter,
          '--output',
          `oci:${join(dir, `out-${outcomes.size}`)}:x`,
        ];
        const built = spawnSync(argv[0]!, argv.slice(1), {
          encoding: 'utf8',
          env: {
            ...process.env,
            HOME: dir,
            TMPDIR: dir,
            STRATUM_CACHE_DIR: join(dir, `cache-${outcomes.size}`),
            STRATUM_DATA_DIR: join(dir, `data-${outcomes.size}`),
          },
        });
        if (built.status !== 0) throw new Error(`${mode.name} on ${snapshotter}: ${built.stderr}`);
        const found = parseProbes(`${built.stdout}${built.stderr}`);
        outcomes.set(`${mode.name} on ${snapshotter}`, found);
      }
    }
  }, 300_000);

  afterAll(() => {
    for (const file of idFiles) {
      const old = savedIdFiles.get(file);
      if (old === undefined) rmSync(file, { force: true });
      else writeFileSync(file, old);
    }
    if (loop !== undefined) spawnSync('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The outcome of one probe for every (mode, snapshotter, uid). */
  function each(probe: string): [string, string | undefined][] {
    return [...outcomes].flatMap(([where, found]) =>
      ['0', '65534'].map((uid): [string, string | undefined] => [
        `${where}, uid ${uid}`,
        found.get(`${uid} ${probe}`),
      ]),
    );
  }

  const expectAll = (probe: string, expected: string): void => {
    expect(outcomes.size).toBe(modes.length * 2);
    expect(Object.fromEntries(each(probe))).toEqual(
      Object.fromEntries(each(probe).map(([where]) => [where, expected])),
    );
  };

  it('seccomp is on (Docker default profile: one filter)', () => {
    expectAll('seccomp', '2');
  });
  it('a RUN step cannot write /proc/sys', () => {
    expectAll('proc-sys', 'refused');
  });
  it('/proc/sysrq-trigger is read-only; kcore, keys, timer_list, sched_debug, interrupts and /sys/firmware read empty', () => {
    expectAll('sysrq', 'ro');
    expectAll('masked-proc', '0');
    expectAll('firmware', '0');
  });
  it('a RUN step cannot read a host block device it makes', () => {
    expectAll('made-device', 'refused');
  });
  it('a RUN step cannot read a host block device that a base image ships', () => {
    expectAll('shipped-device', 'refused');
  });
  it('keyctl, unshare and mount are denied', () => {
    for (const call of ['keyctl', 'unshare', 'unshare-mount', 'mount']) expectAll(call, 'EPERM');
  });
  it('the devices a step needs still work', () => {
    expectAll('dev-null', 'writable');
  });
});
