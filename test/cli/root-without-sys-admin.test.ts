import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { layerListings } from '../helpers/layout.js';
import { isRoot, requireTool } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/**
 * Root in a container without CAP_SYS_ADMIN (Docker's and Kubernetes' default capabilities;
 * kaniko's setting) may not make mount namespaces, so RUN failed there. stratum now runs
 * itself in a user namespace that maps every id to itself (src/user-namespace.ts), where it
 * may: the same layers come out as a build with every capability makes.
 */
describe.skipIf(!isRoot)('as root without CAP_SYS_ADMIN (a container root)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-no-sys-admin-'));
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    mkdirSync(join(dir, 'ctx'));
    writeFileSync(join(dir, 'ctx/f'), 'f\n');
    writeFileSync(
      join(dir, 'ctx/Dockerfile'),
      [
        `FROM oci:${join(dir, 'base/layout')}:1`,
        'RUN mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && chown -R 4242:4243 /data',
        'COPY --chown=1000:1000 f /home/app/f',
        'USER 1000:1000',
        'RUN mkdir /home/app/p && echo s > /home/app/p/s && chmod 700 /home/app/p && id -G > /home/app/groups',
        'USER 0',
        'RUN rm /data/a && rm -rf /data/sub && ls /sys/class/net > /interfaces',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const build = (out: string, prefix: readonly string[], network: readonly string[]) =>
    spawnSync(
      prefix[0] ?? process.execPath,
      [
        ...prefix.slice(1),
        ...(prefix.length > 0 ? [process.execPath] : []),
        BIN,
        'build',
        join(dir, 'ctx'),
        ...network,
        '--progress',
        'plain',
        '--output',
        `oci:${out}:x`,
      ],
      {
        env: { ...process.env, STRATUM_CACHE_DIR: join(dir, `cache-${out.split('/').pop()}`) },
        encoding: 'utf8',
      },
    );

  it('RUN works, on overlay in a user namespace of every id, and the layers are the ones a full root build makes', () => {
    const dropped = ['setpriv', '--bounding-set=-sys_admin', '--inh-caps=-sys_admin'];
    // The machine's own check that the capability is gone: a mount namespace is refused.
    const probe = spawnSync(dropped[0]!, [...dropped.slice(1), 'unshare', '--mount', 'true']);
    expect(probe.status).not.toBe(0);

    for (const network of [['--network', 'none'], []]) {
      if (network.length === 0) requireTool('pasta', 'passt');
      const name = network.length === 0 ? 'default-network' : 'no-network';
      const limited = build(join(dir, `out-limited-${name}`), dropped, network);
      expect(limited.status, limited.stderr).toBe(0);
      expect(limited.stderr).toContain('snapshotter: overlay (available, in a user namespace of every id)');
      const full = build(join(dir, `out-full-${name}`), [], network);
      expect(full.status, full.stderr).toBe(0);
      expect(layerListings(join(dir, `out-limited-${name}`))).toEqual(
        layerListings(join(dir, `out-full-${name}`)),
      );
    }
    const layers = layerListings(join(dir, 'out-limited-no-network'));
    expect(layers[1]).toContain('-rw-r--r-- 4242/4243 2 data/sub/b');
    expect(layers[3]).toContain('drwx------ 1000/1000 0 home/app/p/');
    expect(layers[4]).toEqual(
      expect.arrayContaining(['---------- 0/0 0 data/.wh.a', '---------- 0/0 0 data/.wh.sub']),
    );
    // Nothing stays mounted on the host: the mounts lived in the build's own namespace.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(dir);
    expect(readdirSync(join(dir, 'cache-out-limited-no-network', 'overlay-rootless', 'sessions'))).toEqual(
      [],
    );
  });
});
