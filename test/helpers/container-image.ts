import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inCI } from './system.js';

/** Debian's Docker client (BuildKit built in); the Docker 28 client first on PATH wants buildx. */
export const DOCKER = '/usr/bin/docker';

/** The image CI containers run stratum in: Debian bookworm minbase with what RUN needs in a container. */
export const CONTAINER_IMAGE = 'stratum-test/debian-ci:2';
const PACKAGES = ['passt', 'proot'];
const CACHE = process.env['STRATUM_TEST_DEBIAN'] ?? '/var/tmp/stratum-test-debian';

/** The Debian mirror apt already uses here (no other host is reachable). */
function aptMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri =
      /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text)?.[1];
    if (uri !== undefined) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/** A Docker daemon answers through Debian's client. */
export function dockerAvailable(): boolean {
  if (spawnSync(DOCKER, ['info'], { stdio: 'ignore' }).status === 0) return true;
  if (inCI) throw new Error(`CI is set but ${DOCKER} info fails: .ci/run starts dockerd`);
  console.warn(`skipping: no Docker daemon (${DOCKER} info fails)`);
  return false;
}

/**
 * Makes CONTAINER_IMAGE in Docker's store once per machine: debootstrap (minutes, the first time;
 * kept in $STRATUM_TEST_DEBIAN) plus passt and proot, imported with `docker import`. Node is not
 * in it: tests mount the Node that runs them, and the checkout.
 */
export function ensureContainerImage(): void {
  if (spawnSync(DOCKER, ['image', 'inspect', CONTAINER_IMAGE], { stdio: 'ignore' }).status === 0) return;
  const rootfs = join(CACHE, 'rootfs');
  const done = join(CACHE, 'done-2');
  if (!existsSync(done)) {
    rmSync(CACHE, { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    execFileSync(
      'debootstrap',
      ['--variant=minbase', `--include=${PACKAGES.join(',')}`, 'bookworm', rootfs, aptMirror()],
      { stdio: 'ignore', timeout: 900_000 },
    );
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
    rmSync(join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
    writeFileSync(done, '');
  }
  execFileSync('sh', ['-c', `tar -C '${rootfs}' -c . | ${DOCKER} import - ${CONTAINER_IMAGE}`], {
    stdio: 'ignore',
  });
}
