import { execFileSync, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCommand, inCI, isRoot, holdSubordinateIdsLock, requireTool } from '../../helpers/system.js';
import { baseSpec, hostMountsOf, listTree, makeBusyboxRootfs, makeTempDir } from './fixtures.js';
import { tools } from './run-helpers.js';

const ready = tools.every(([command, pkg]) => requireTool(command, pkg));
const repo = resolve(import.meta.dirname, '../../..');
const nobody = 65534;

/**
 * The rootless path, tested for real: the sandbox module is compiled on its own (it needs only
 * node and src/errors.ts) into a directory any user can read, and a Node process running as
 * nobody (setpriv) calls runInSandbox on a busybox rootfs that nobody owns.
 */
describe.skipIf(!ready || !isRoot)('RUN without root', () => {
  // /etc/subuid and /etc/subgid are the machine's: one such test file at a time (see the helper).
  holdSubordinateIdsLock();
  let dir: string;
  let rootfs: string;
  let compiled: string;
  beforeAll(() => {
    dir = makeTempDir('stratum-rootless-');
    rootfs = makeBusyboxRootfs(dir, { full: false });
    execFileSync('chown', ['-R', `${nobody}:${nobody}`, rootfs]);
    compiled = join(dir, 'lib');
    execFileSync(process.execPath, [
      join(repo, 'node_modules/typescript/bin/tsc'),
      ...[
        '--outDir',
        compiled,
        '--rootDir',
        join(repo, 'src'),
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
      ],
      ...[
        '--target',
        'es2022',
        '--types',
        'node',
        '--skipLibCheck',
        join(repo, 'src/executor/sandbox/index.ts'),
      ],
    ]);
    writeFileSync(join(compiled, 'package.json'), '{"type":"module"}');
    const tmp = join(dir, 'tmp');
    execFileSync('mkdir', ['-m', '1777', tmp]);
    chmodSync(dir, 0o755);
  }, 60_000);
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs runInSandbox as nobody; returns what it printed (JSON) or the error's code and message. */
  function runAsNobody(spec: object): { ok: boolean; value: Record<string, unknown> } {
    const script = `
      import { runInSandbox } from ${JSON.stringify(join(compiled, 'executor/sandbox/index.js'))};
      let out = '';
      try {
        const result = await runInSandbox(${JSON.stringify(spec)}, { onOutput: (c) => { out += c; } });
        console.log(JSON.stringify({ ok: true, value: { ...result, out } }));
      } catch (error) {
        console.log(JSON.stringify({ ok: false, value: { code: error.code, message: error.message } }));
      }`;
    const child = spawnSync(
      'setpriv',
      [
        `--reuid=${nobody}`,
        `--regid=${nobody}`,
        '--clear-groups',
        process.execPath,
        '--input-type=module',
        '-e',
        script,
      ],
      {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, TMPDIR: join(dir, 'tmp') },
        cwd: dir,
        timeout: 30_000,
      },
    );
    expect(child.stderr).toBe('');
    return JSON.parse(child.stdout) as { ok: boolean; value: Record<string, unknown> };
  }

  const userNamespacesWork =
    spawnSync('setpriv', [
      `--reuid=${nobody}`,
      `--regid=${nobody}`,
      '--clear-groups',
      'unshare',
      '--user',
      '--map-root-user',
      'true',
    ]).status === 0;

  it('runs the step as root of a user namespace, isolated, leaving nothing behind; or says what is missing', () => {
    const before = listTree(rootfs);
    const run = runAsNobody(
      baseSpec(
        rootfs,
        [
          'sh',
          '-c',
          'id -u; echo $$; hostname; grep " /sys " /proc/mounts | cut -d" " -f4 | cut -d, -f1; ls /sys/class/net; stat -c %u /bin/busybox',
        ],
        {
          network: 'none',
          hostname: 'rootless',
        },
      ),
    );
    if (userNamespacesWork) {
      expect(run).toEqual({ ok: true, value: { exitCode: 0, out: '0\n1\nrootless\nro\nlo\n0\n' } });
    } else {
      expect(run.value.code).toBe('UNSUPPORTED');
      expect(run.value.message).toMatch(/user namespaces/);
    }
    expect(listTree(rootfs)).toEqual(before);
    expect(hostMountsOf(dir)).toEqual([]);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it.runIf(userNamespacesWork)(
    'with the host network, /sys is the host sysfs bound read-only (a user namespace cannot mount its own)',
    () => {
      const run = runAsNobody(
        baseSpec(rootfs, ['sh', '-c', 'touch /sys/x 2>/dev/null || echo ro; ls /sys/class/net'], {
          network: 'host',
        }),
      );
      expect(run).toEqual({
        ok: true,
        value: { exitCode: 0, out: `ro\n${readdirSync('/sys/class/net').sort().join('\n')}\n` },
      });
    },
  );

  it('asks for a non-root USER without root and without a subordinate range: a clear error naming what is missing', () => {
    const run = runAsNobody(baseSpec(rootfs, ['true'], { uid: 1000, gid: 1000 }));
    expect(run.value.code).toBe('UNSUPPORTED');
    expect(run.value.message).toMatch(
      /uid 1000 .* needs root, or a subordinate id range for nobody .*uidmap/,
    );
  });

  describe('with a subordinate id range for the user in /etc/subuid and /etc/subgid', () => {
    const files = ['/etc/subuid', '/etc/subgid'];
    const saved = new Map<string, string | undefined>();
    const rangeStart = 300_000;
    beforeAll(() => {
      for (const file of files) {
        saved.set(file, existsSync(file) ? readFileSync(file, 'utf8') : undefined);
        appendFileSync(file, `nobody:${rangeStart}:65536\n`);
      }
      // /home/app owned by what is uid/gid 1000 inside the namespace (1..65536 -> 300000..)
      mkdirSync(join(rootfs, 'home', 'app'), { recursive: true });
      chownSync(join(rootfs, 'home'), nobody, nobody);
      chownSync(join(rootfs, 'home', 'app'), rangeStart + 999, rangeStart + 999);
    });
    afterAll(() => {
      for (const file of files) {
        const old = saved.get(file);
        if (old === undefined) rmSync(file, { force: true });
        else writeFileSync(file, old);
      }
      rmSync(join(rootfs, 'home'), { recursive: true, force: true });
    });

    it('runs USER 1000 with its groups, and its files belong to the mapped ids; or names newuidmap as missing', () => {
      // CI installs uidmap (.ci/run): there the mapped case must run, not the error case.
      if (inCI) expect(hasCommand('newuidmap') && hasCommand('newgidmap'), 'uidmap installed').toBe(true);
      const run = runAsNobody(
        baseSpec(rootfs, ['sh', '-c', 'id -u; id -g; id -G; touch f && stat -c "%u %g" f'], {
          uid: 1000,
          gid: 1000,
          additionalGids: [29, 100],
          cwd: '/home/app',
        }),
      );
      if (hasCommand('newuidmap') && hasCommand('newgidmap')) {
        expect(run).toEqual({
          ok: true,
          value: { exitCode: 0, out: '1000\n1000\n1000 29 100\n1000 1000\n' },
        });
        const st = statSync(join(rootfs, 'home', 'app', 'f'));
        expect([st.uid, st.gid]).toEqual([rangeStart + 999, rangeStart + 999]);
      } else {
        expect(run.value.code).toBe('UNSUPPORTED');
        expect(run.value.message).toMatch(/newuidmap and newgidmap installed \(Debian package uidmap\)/);
      }
    });

    it('ids beyond the range are refused naming the range (or naming uidmap when it is missing)', () => {
      const run = runAsNobody(baseSpec(rootfs, ['true'], { uid: 70000, gid: 0 }));
      expect(run.value.code).toBe('UNSUPPORTED');
      expect(run.value.message).toMatch(
        hasCommand('newuidmap') && hasCommand('newgidmap')
          ? /uid 70000 is outside .*1\.\.65536/
          : /uid 70000 .*uidmap/,
      );
    });
  });
});
