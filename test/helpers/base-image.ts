import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '../../examples/busybox-base.js';

/**
 * Test base images, made because nothing can be pulled. The builder itself is
 * examples/busybox-base.js, shared with the benchmarks and examples/make-busybox-base.sh; this
 * module adds what only tests need.
 */
export {
  BUSYBOX,
  makeBusyboxRootfs,
  writeBaseImage,
  type BaseImageFiles,
  type BaseImageOptions,
} from '../../examples/busybox-base.js';

/**
 * The busybox rootfs the parity cases build on: also the files a real base has for the bind
 * mounts of a RUN (/etc/hosts, /etc/resolv.conf), so that the BuildKit here (0.8, Docker 20.10)
 * leaves no mount stubs in RUN layers. Current BuildKit removes its stubs (executor/stubs.go).
 */
export function makeParityBaseRootfs(rootfs: string): void {
  makeBusyboxRootfs(rootfs);
  for (const file of ['etc/hosts', 'etc/resolv.conf']) {
    if (!existsSync(join(rootfs, file))) writeFileSync(join(rootfs, file), '');
  }
}

/** Loads a docker-archive into the running Docker daemon. */
export function dockerLoad(archive: string): void {
  execFileSync('docker', ['load', '-i', archive], { stdio: 'ignore' });
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}
