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
import { writeNonUtf8Context } from '../helpers/non-utf8.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * Docker parity: each case under cases/ is built by Docker's classic builder (the reference where
 * the two builders differ) and by stratum, on the overlay and on the scan snapshotter, from
 * the same busybox base; the images must hold the same filesystem after every instruction
 * (type, mode, owner, content, link target, hard-link groups; not times) and the same config.
 * A case whose Docker build fails must fail in stratum too.
 */

const CASES = resolve(import.meta.dirname, 'cases');
const BASE_TAG = 'stratum-test/busybox:1';
/** The same busybox with no Env in its config (as `docker import` makes it). */
const NOENV_BASE_TAG = 'stratum-test/busybox-noenv:1';
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

/**
 * BuildKit-only syntax (RUN --mount of every type, COPY --chmod) has BuildKit as its reference:
 * cases under buildkit-cases/ are built with DOCKER_BUILDKIT=1 from a base that also holds /dev,
 * /proc and /sys (BuildKit's runc creates those mount points in every RUN's layer when the base
 * lacks them; real bases have them). A case's `secret.txt` is passed as secret id `s`.
 */
const BUILDKIT_CASES = resolve(import.meta.dirname, 'buildkit-cases');
const BUILDKIT_BASE_TAG = 'stratum-test/busybox-bk:1';

interface Builder {
  readonly name: 'classic' | 'buildkit';
  readonly cases: string;
}

for (const builder of [
  { name: 'classic', cases: CASES },
  { name: 'buildkit', cases: BUILDKIT_CASES },
] as const satisfies readonly Builder[]) {
  describe.skipIf(!enabled)(`Docker parity (${builder.name} builder vs stratum build)`, () => {
    let dir: string | undefined;
    let dataDir = '';
    beforeAll(async () => {
      const work = mkdtempSync(join(tmpdir(), 'stratum-parity-'));
      dir = work;
      const rootfs = join(work, 'base-rootfs');
      mkdirSync(rootfs);
      makeBusyboxRootfs(rootfs);
      dataDir = join(work, 'data');
      const bases: [string, boolean][] =
        builder.name === 'classic'
          ? [
              [BASE_TAG, false],
              [NOENV_BASE_TAG, true],
            ]
          : [[BUILDKIT_BASE_TAG, false]];
      if (builder.name === 'buildkit') for (const sub of ['dev', 'proc', 'sys']) mkdirSync(join(rootfs, sub));
      for (const [tag, withoutEnv] of bases) {
        const base = writeBaseImage(rootfs, join(work, `base-${withoutEnv ? 'noenv' : 'env'}`), tag, {
          withoutEnv,
        });
        dockerLoad(base.dockerArchive);
        const source = await openOciLayout(base.layout, '1');
        await new ImageStore(dataDir).put(source, [tag]);
        await source.close();
      }
    });
    afterAll(() => {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    for (const name of readdirSync(builder.cases).sort()) {
      it(`${name}: same filesystem after every step and same config`, async () => {
        await parityCase(builder, join(builder.cases, name), dir!, dataDir);
      });
    }

    if (builder.name === 'buildkit') {
      it('names that are not UTF-8: COPY (directory and wildcard), ADD of a tar, RUN (made, read by the next step, deleted) match BuildKit', async () => {
        const context = join(dir!, 'non-utf8-names');
        writeNonUtf8Context(context, BUILDKIT_BASE_TAG);
        await parityCase(builder, context, dir!, dataDir);
      });

      it('bind-mount rebuild: changing the mounted file changes both images alike, and --explain says why', async () => {
        const context = join(dir!, 'bind-rebuild');
        mkdirSync(context);
        writeFileSync(
          join(context, 'Dockerfile'),
          `FROM ${BUILDKIT_BASE_TAG}\nRUN --mount=type=bind,source=data.txt,target=/tmp/data.txt cp /tmp/data.txt /out.txt\n`,
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
    }
  });
}

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

async function parityCase(builder: Builder, context: string, dir: string, dataDir: string): Promise<void> {
  const name = basename(context);
  const tag = `stratum-parity/${name}:${RUN_SUFFIX}`;
  const secretFile = join(context, 'secret.txt');
  const secrets = existsSync(secretFile) ? { s: secretFile } : undefined;
  const docker = spawnSync(
    DOCKER,
    [
      'build',
      '--network=none',
      '--no-cache',
      ...(secrets === undefined ? [] : ['--secret', `id=s,src=${secretFile}`]),
      '-t',
      tag,
      context,
    ],
    { env: { ...process.env, DOCKER_BUILDKIT: builder.name === 'buildkit' ? '1' : '0' }, encoding: 'utf8' },
  );
  // Both snapshotters against the same Docker image: overlay (the default as root) and scan
  // (the fallback), each with its own cache so neither reuses the other's layers.
  const outs: { snapshotter: 'overlay' | 'scan'; out: string; error: unknown }[] = [];
  for (const snapshotter of ['overlay', 'scan'] as const) {
    const out = join(dir, `out-${builder.name}-${name}-${snapshotter}`);
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
  if (docker.status !== 0) {
    // Docker refused or the build failed: stratum must fail as well, on both snapshotters.
    for (const { snapshotter, error } of outs) {
      expect(
        error,
        `docker failed (${docker.stderr.trim().split('\n').pop()}) but stratum (${snapshotter}) succeeded`,
      ).toBeDefined();
    }
    return;
  }
  const archive = join(dir, `${builder.name}-${name}.docker.tar`);
  execFileSync(DOCKER, ['save', '-o', archive, tag]);
  try {
    for (const { snapshotter, out, error } of outs) {
      if (error instanceof Error) throw error;
      expect(error).toBeUndefined();
      const dockerImage: ImageSource = await openImage(`docker-archive:${archive}`);
      const stratumImage: ImageSource = await openImage(`oci:${out}:latest`);
      try {
        const diff = await diffImages(dockerImage, stratumImage, {});
        expect(diff.equivalent, `${snapshotter} snapshotter:\n${formatImageDiff(diff)}`).toBe(true);
      } finally {
        await dockerImage.close();
        await stratumImage.close();
      }
    }
  } finally {
    execFileSync(DOCKER, ['rmi', '-f', tag], { stdio: 'ignore' });
  }
}
