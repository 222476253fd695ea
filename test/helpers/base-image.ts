import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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

/** Loads a docker-archive into the running Docker daemon. */
export function dockerLoad(archive: string): void {
  execFileSync('docker', ['load', '-i', archive], { stdio: 'ignore' });
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}
