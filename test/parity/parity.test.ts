import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffImages } from '../../src/analyze/diff.js';
import { formatImageDiff } from '../../src/analyze/format.js';
import { buildImage } from '../../src/build/build-image.js';
import type { ImageSource } from '../../src/oci/image.js';
import { openImage } from '../../src/transport/images.js';
import { openOciLayout } from '../../src/transport/layout/reader.js';
import { ImageStore } from '../../src/transport/store/store.js';
import { dockerLoad, makeParityBaseRootfs, writeBaseImage } from '../helpers/base-image.js';
import { writeNonUtf8Context } from '../helpers/non-utf8.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * Docker parity. Docker's builder is BuildKit (the default since Engine 23), so BuildKit is the
 * reference: each case under cases/ is built by BuildKit (DOCKER_BUILDKIT=1) and by stratum, on
 * the overlay and on the scan snapshotter, from the same busybox base; the images must hold the
 * same filesystem after every instruction (type, mode, owner, content, link target, hard-link
 * groups; not times), the same layers (an empty layer is a layer) and the same config. A case
 * whose BuildKit build fails must fail in stratum too.
 *
 * moby's classic builder is a second reference where it agrees with BuildKit: every case is built
 * by it too and compared, unless the case holds a `classic-differs` file saying how classic
 * differs. A case's `secret.txt` is passed as secret id `s` (BuildKit only: classic has no
 * secrets, so such cases hold `classic-differs`).
 */

const CASES = resolve(import.meta.dirname, 'cases');
const BASE_TAG = 'stratum-test/busybox:2';
/** The same busybox with no Env in its config (as `docker import` makes it). */
const NOENV_BASE_TAG = 'stratum-test/busybox-noenv:2';
/**
 * Debian's Docker client: it has BuildKit built in (DOCKER_BUILDKIT=1), unlike the Docker 28
 * client that may come first on PATH without buildx.
 */
const DOCKER = '/usr/bin/docker';
/** Output tags get a per-run suffix, so parallel runs of this suite do not collide. */
const RUN_SUFFIX = randomBytes(4).toString('hex');

function dockerWorks(): boolean {
  if (!requireTool(DOCKER, 'docker.io')) return false;
  const info = spawnSync(DOCKER, ['info'], { stdio: 'ignore' });
  if (info.status === 0) return true;
  if (process.env.CI)
    throw new Error('CI is set but the Docker daemon does not answer (.ci/run starts dockerd)');
  console.warn('skipping parity: no Docker daemon (start dockerd --bridge=none --iptables=false)');
  return false;
}

const enabled = isRoot && dockerWorks();

type Builder = 'buildkit' | 'classic';

describe.skipIf(!enabled)('Docker parity (BuildKit, and classic where it agrees, vs stratum build)', () => {
  let dir: string | undefined;
  let dataDir = '';
  beforeAll(async () => {
    const work = mkdtempSync(join(tmpdir(), 'stratum-parity-'));
    dir = work;
    const rootfs = join(work, 'base-rootfs');
    mkdirSync(rootfs);
    makeParityBaseRootfs(rootfs);
    dataDir = join(work, 'data');
    for (const [tag, withoutEnv] of [
      [BASE_TAG, false],
      [NOENV_BASE_TAG, true],
    ] as const) {
      const base = writeBaseImage(rootfs, join(work, `base-${withoutEnv ? 'noenv' : 'env'}`), tag, {
        withoutEnv,
      });
      dockerLoad(base.dockerArchive);
      const source = await openOciLayout(base.layout, '2');
      await new ImageStore(dataDir).put(source, [tag]);
      await source.close();
    }
  });
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  for (const name of readdirSync(CASES).sort()) {
    const context = join(CASES, name);
    const classicDiffers = existsSync(join(context, 'classic-differs'));
    it(`${name}: same filesystem after every step and same config as BuildKit${classicDiffers ? '' : ' and classic'}`, async () => {
      const outs = await buildWithStratum(context, dir!, dataDir);
      await compareWith('buildkit', context, outs, dir!);
      if (!classicDiffers) await compareWith('classic', context, outs, dir!);
    });
  }

  it('names that are not UTF-8: COPY (directory and wildcard), ADD of a tar, RUN (made, read by the next step, deleted) match BuildKit', async () => {
    const context = join(dir!, 'non-utf8-names');
    writeNonUtf8Context(context, BASE_TAG);
    const outs = await buildWithStratum(context, dir!, dataDir);
    await compareWith('buildkit', context, outs, dir!);
  });

  it('bind-mount rebuild: changing the mounted file changes both images alike, and --explain says why', async () => {
    const context = join(dir!, 'bind-rebuild');
    mkdirSync(context);
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM ${BASE_TAG}\nRUN --mount=type=bind,source=data.txt,target=/tmp/data.txt cp /tmp/data.txt /out.txt\n`,
    );
    writeFileSync(join(context, 'data.txt'), 'one\n');
    const cacheDir = join(dir!, 'bind-rebuild-cache');
    const first = await rebuildBoth(context, cacheDir, dataDir, dir!, 'first');
    writeFileSync(join(context, 'data.txt'), 'two, longer\n');
    const second = await rebuildBoth(context, cacheDir, dataDir, dir!, 'second');
    expect(second.stratumDigest).not.toBe(first.stratumDigest);
    expect(second.reasons).toContain(
      'RUN: bind mount /tmp/data.txt: context file data.txt changed (content)',
    );
  });
});

/**
 * Builds `context` with BuildKit (its cache kept, as a user's rebuild would) and with stratum
 * (one cache dir across calls, explain on), and checks the two images are equivalent.
 */
async function rebuildBoth(
  context: string,
  cacheDir: string,
  dataDir: string,
  dir: string,
  label: string,
): Promise<{ stratumDigest: string; reasons: string[] }> {
  const tag = `stratum-parity/bind-rebuild-${label}:${RUN_SUFFIX}`;
  const docker = spawnSync(DOCKER, ['build', '--network=none', '-t', tag, context], {
    env: { ...process.env, DOCKER_BUILDKIT: '1' },
    encoding: 'utf8',
  });
  expect(docker.status, docker.stderr).toBe(0);
  const out = join(dir, `out-bind-rebuild-${label}`);
  const reasons: string[] = [];
  const result = await buildImage({
    contextDir: context,
    dockerfilePath: join(context, 'Dockerfile'),
    dockerfile: readFileSync(join(context, 'Dockerfile')),
    dataDir,
    cacheDir,
    network: 'none',
    explain: true,
    outputs: [`oci:${out}:latest`],
    onEvent: (event) => {
      if (event.kind === 'cache') reasons.push(...event.reasons);
    },
  });
  const archive = join(dir, `bind-rebuild-${label}.docker.tar`);
  execFileSync(DOCKER, ['save', '-o', archive, tag]);
  const dockerImage = await openImage(`docker-archive:${archive}`);
  const stratumImage = await openImage(`oci:${out}:latest`);
  try {
    const diff = await diffImages(dockerImage, stratumImage, {});
    expect(diff.equivalent, formatImageDiff(diff)).toBe(true);
  } finally {
    await dockerImage.close();
    await stratumImage.close();
    execFileSync(DOCKER, ['rmi', '-f', tag], { stdio: 'ignore' });
  }
  return { stratumDigest: result.digest, reasons };
}

interface StratumOutput {
  readonly snapshotter: 'overlay' | 'scan';
  readonly out: string;
  readonly error: unknown;
}

/**
 * Builds a case with stratum on both snapshotters (overlay, the default as root, and scan, the
 * fallback), each with its own cache so neither reuses the other's layers.
 */
async function buildWithStratum(context: string, dir: string, dataDir: string): Promise<StratumOutput[]> {
  const name = basename(context);
  const secretFile = join(context, 'secret.txt');
  const secrets = existsSync(secretFile) ? { s: secretFile } : undefined;
  const outs: StratumOutput[] = [];
  for (const snapshotter of ['overlay', 'scan'] as const) {
    const out = join(dir, `out-${name}-${snapshotter}`);
    let error: unknown;
    try {
      await buildImage({
        contextDir: context,
        dockerfilePath: join(context, 'Dockerfile'),
        dockerfile: readFileSync(join(context, 'Dockerfile')),
        dataDir,
        cacheDir: join(dir, `cache-${snapshotter}`),
        network: 'none',
        snapshotter,
        outputs: [`oci:${out}:latest`],
        ...(secrets === undefined ? {} : { secrets }),
      });
    } catch (caught) {
      error = caught;
    }
    outs.push({ snapshotter, out, error });
  }
  return outs;
}

/** Builds the case with one of Docker's builders and compares its image with stratum's. */
async function compareWith(
  builder: Builder,
  context: string,
  outs: readonly StratumOutput[],
  dir: string,
): Promise<void> {
  const name = basename(context);
  const tag = `stratum-parity/${name}-${builder}:${RUN_SUFFIX}`;
  const secretFile = join(context, 'secret.txt');
  const docker = spawnSync(
    DOCKER,
    [
      'build',
      '--network=none',
      '--no-cache',
      ...(builder === 'buildkit' && existsSync(secretFile) ? ['--secret', `id=s,src=${secretFile}`] : []),
      '-t',
      tag,
      context,
    ],
    { env: { ...process.env, DOCKER_BUILDKIT: builder === 'buildkit' ? '1' : '0' }, encoding: 'utf8' },
  );
  if (docker.status !== 0) {
    // Docker refused or the build failed: stratum must fail as well, on both snapshotters.
    for (const { snapshotter, error } of outs) {
      expect(
        error,
        `${builder} failed (${docker.stderr.trim().split('\n').pop()}) but stratum (${snapshotter}) succeeded`,
      ).toBeDefined();
    }
    return;
  }
  const archive = join(dir, `${builder}-${name}.docker.tar`);
  execFileSync(DOCKER, ['save', '-o', archive, tag]);
  try {
    for (const { snapshotter, out, error } of outs) {
      if (error instanceof Error) throw error;
      expect(error).toBeUndefined();
      const dockerImage: ImageSource = await openImage(`docker-archive:${archive}`);
      const stratumImage: ImageSource = await openImage(`oci:${out}:latest`);
      try {
        const diff = await diffImages(dockerImage, stratumImage, {});
        expect(
          diff.equivalent,
          `${builder} vs stratum (${snapshotter} snapshotter):\n${formatImageDiff(diff)}`,
        ).toBe(true);
      } finally {
        await dockerImage.close();
        await stratumImage.close();
      }
    }
  } finally {
    execFileSync(DOCKER, ['rmi', '-f', tag], { stdio: 'ignore' });
  }
}
