import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * BuildKit's entitlements: a Dockerfile never takes more than the person running the build
 * granted. `RUN --network=host` needs `--allow network.host`, `RUN --security=insecure` needs
 * `--allow security.insecure` (then every capability and no seccomp, so a mount inside works).
 */
describe.skipIf(!isRoot || !requireTool('unshare', 'util-linux'))('entitlements (--allow)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-allow-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function build(name: string, run: string, extra: readonly string[]) {
    const ctx = join(dir, name);
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, 'Dockerfile'), `FROM oci:${join(dir, 'base/layout')}:1\n${run}\n`);
    const out = join(dir, `out-${name}-${extra.length}`);
    const result = spawnSync(
      process.execPath,
      [
        BIN,
        'build',
        ctx,
        '--network',
        'none',
        '--progress',
        'plain',
        '-o',
        `type=local,dest=${out}`,
        ...extra,
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, STRATUM_CACHE_DIR: join(dir, 'cache'), STRATUM_DATA_DIR: join(dir, 'data') },
      },
    );
    return { ...result, out };
  }

  it('RUN --network=host is refused without --allow network.host, naming the line; with it the step has the host network', () => {
    const run = 'RUN --network=host ls /sys/class/net > /interfaces';
    const refused = build('host', run, []);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /^stratum: \S+Dockerfile:2: .*RUN --network=host needs the network.host entitlement: pass --allow network.host/m,
    );
    expect(refused.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const granted = build('host', run, ['--allow', 'network.host']);
    expect(granted.status, granted.stderr).toBe(0);
    const hostInterfaces = readdirSync('/sys/class/net').sort();
    expect(readFileSync(join(granted.out, 'interfaces'), 'utf8').trim().split(/\s+/).sort()).toEqual(
      hostInterfaces,
    );
  });

  it('RUN --security=insecure is refused without --allow security.insecure; with it the step may mount (no seccomp, every capability)', () => {
    const run =
      'RUN --security=insecure mkdir -p /m && mount -t tmpfs none /m && grep ^Seccomp: /proc/self/status > /seccomp && umount /m';
    const refused = build('insecure', run, []);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /^stratum: \S+Dockerfile:2: .*RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure/m,
    );
    const granted = build('insecure', run, ['--allow=security.insecure,network.host']);
    expect(granted.status, granted.stderr).toBe(0);
    expect(readFileSync(join(granted.out, 'seccomp'), 'utf8')).toMatch(/^Seccomp:\s+0$/m);
    // A step without the flag in the same build keeps the sandbox.
    const plain = build('plain', 'RUN grep ^Seccomp: /proc/self/status > /seccomp', [
      '--allow',
      'security.insecure',
    ]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(readFileSync(join(plain.out, 'seccomp'), 'utf8')).toMatch(/^Seccomp:\s+2$/m);
  });

  it('an unknown entitlement is a usage error', () => {
    const result = build('bogus', 'RUN true', ['--allow', 'device']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      /--allow device: unknown entitlement \(valid: network.host, security.insecure\)/,
    );
  });
});
