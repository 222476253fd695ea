import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ImageStore,
  buildImage,
  diffImages,
  formatImageDiff,
  openImage,
  openOciLayout,
  type ImageSource,
} from '../../src/index.js';
import { dockerLoad, makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * Docker parity: each case under cases/ is built by Docker's classic builder and by stratum from
 * the same busybox base; the images must hold the same filesystem after every instruction
 * (type, mode, owner, content, link target, hard-link groups; not times) and the same config.
 * A case whose Docker build fails must fail in stratum too.
 */

const CASES = resolve(import.meta.dirname, 'cases');
const BASE_TAG = 'stratum-test/busybox:1';

function dockerWorks(): boolean {
  if (!requireTool('docker', 'docker.io')) return false;
  const info = spawnSync('docker', ['info'], { stdio: 'ignore' });
  if (info.status === 0) return true;
  if (process.env.CI)
    throw new Error('CI is set but the Docker daemon does not answer (.ci/run starts dockerd)');
  console.warn('skipping parity: no Docker daemon (start dockerd --bridge=none --iptables=false)');
  return false;
}

const enabled = isRoot && dockerWorks();

describe.skipIf(!enabled)('Docker parity (classic builder vs stratum build)', () => {
  let dir: string | undefined;
  let dataDir = '';
  beforeAll(async () => {
    const work = mkdtempSync(join(tmpdir(), 'stratum-parity-'));
    dir = work;
    const rootfs = join(work, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    const base = writeBaseImage(rootfs, join(work, 'base'), BASE_TAG);
    dockerLoad(base.dockerArchive);
    dataDir = join(work, 'data');
    const source = await openOciLayout(base.layout, '1');
    await new ImageStore(dataDir).put(source, [BASE_TAG]);
    await source.close();
  });
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  for (const name of readdirSync(CASES).sort()) {
    it(`${name}: same filesystem after every step and same config`, async () => {
      const context = join(CASES, name);
      // A random tag suffix: other checkouts may run this suite against the same daemon.
      const tag = `stratum-parity/${name}:${process.pid}-${Date.now().toString(36)}`;
      const docker = spawnSync('docker', ['build', '--network=none', '--no-cache', '-t', tag, context], {
        env: { ...process.env, DOCKER_BUILDKIT: '0' },
        encoding: 'utf8',
      });
      let stratumError: unknown;
      const out = join(dir!, `out-${name}`);
      try {
        await buildImage({
          contextDir: context,
          dockerfilePath: join(context, 'Dockerfile'),
          dockerfile: readFileSync(join(context, 'Dockerfile')),
          dataDir,
          cacheDir: join(dir!, 'cache'),
          network: 'none',
          outputs: [`oci:${out}:latest`],
        });
      } catch (error) {
        stratumError = error;
      }
      if (docker.status !== 0) {
        // Docker refused or the build failed: stratum must fail as well.
        expect(
          stratumError,
          `docker failed (${docker.stderr.trim().split('\n').pop()}) but stratum succeeded`,
        ).toBeDefined();
        return;
      }
      if (stratumError instanceof Error) throw stratumError;
      expect(stratumError).toBeUndefined();
      const archive = join(dir!, `${name}.docker.tar`);
      execFileSync('docker', ['save', '-o', archive, tag]);
      const dockerImage: ImageSource = await openImage(`docker-archive:${archive}`);
      const stratumImage: ImageSource = await openImage(`oci:${out}:latest`);
      try {
        const diff = await diffImages(dockerImage, stratumImage, {});
        expect(diff.equivalent, formatImageDiff(diff)).toBe(true);
      } finally {
        await dockerImage.close();
        await stratumImage.close();
        execFileSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
      }
    });
  }
});
