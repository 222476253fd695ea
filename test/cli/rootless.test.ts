import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers, openImage } from '../../src/index.js';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { inCI, isRoot } from '../helpers/system.js';

const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');

/** Unprivileged user namespaces: what a rootless build stands on. */
function userNamespacesWork(): boolean {
  const probe = spawnSync('setpriv', [
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    'unshare',
    '--user',
    '--map-root-user',
    'true',
  ]);
  if (probe.status === 0) return true;
  if (inCI)
    throw new Error(
      'CI is set but unprivileged user namespaces do not work here (sysctl user.max_user_namespaces)',
    );
  console.warn('skipping rootless build test: unprivileged user namespaces are not available');
  return false;
}

/** Runs as root to set up, then builds as nobody (uid 65534): the rootless path end to end. */
describe.skipIf(!isRoot || !userNamespacesWork())('rootless build (as nobody, in a user namespace)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-rootless-'));
    chmodSync(dir, 0o777);
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    mkdirSync(join(dir, 'ctx'));
    writeFileSync(
      join(dir, 'ctx/Dockerfile'),
      `FROM oci:${join(dir, 'base/layout')}:1\nRUN echo rootless > /made-by-run\nCOPY Dockerfile /copied\n`,
    );
    execFileSync('chmod', ['-R', 'a+rX', dir]);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('RUN and COPY work without root, and what they make is root-owned in the layers', async () => {
    const out = join(dir, 'out');
    const built = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        BIN,
        'build',
        join(dir, 'ctx'),
        '--network',
        'none',
        '--progress',
        'plain',
        '--output',
        `oci:${out}:x`,
      ],
      {
        env: {
          ...process.env,
          HOME: dir,
          TMPDIR: dir,
          STRATUM_DATA_DIR: join(dir, 'data'),
          STRATUM_CACHE_DIR: join(dir, 'cache'),
        },
        encoding: 'utf8',
      },
    );
    expect(built.status, built.stderr).toBe(0);
    const image = await openImage(`oci:${out}:x`);
    try {
      const applied = await applyLayers(image);
      for (const path of ['made-by-run', 'copied']) {
        const entry = applied.fs.nodes.get(path)?.entry;
        expect(entry?.type, path).toBe('file');
        expect([entry?.uid, entry?.gid], path).toEqual([0, 0]);
      }
    } finally {
      await image.close();
    }
  });
});
