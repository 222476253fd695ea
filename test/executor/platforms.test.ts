import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLayers } from '../../src/analyze/apply.js';
import { diffImages } from '../../src/analyze/diff.js';
import { formatImageDiff } from '../../src/analyze/format.js';
import type { FsEntry } from '../../src/analyze/fs-model.js';
import { buildImage, type BuildImageOptions } from '../../src/build/build-image.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import type { Platform } from '../../src/oci/types.js';
import { openImage } from '../../src/transport/images.js';
import { formatPlatform } from '../../src/oci/platform.js';
import {
  canMakeMultiPlatformBase,
  writeMultiPlatformBase,
  type MultiPlatformBase,
} from '../helpers/multi-platform-base.js';
import { isRoot, requireTool } from '../helpers/system.js';
import { startRegistry, type RunningRegistry } from '../registry/harness.js';

/**
 * Multi-platform builds end to end: a two-platform busybox base (amd64 + arm64, from Debian's
 * busybox-static), RUN under QEMU for arm64, the automatic platform ARGs, a $BUILDPLATFORM stage
 * shared by both targets, and the image index written and read back by other tools.
 */

const CLI = resolve(import.meta.dirname, '../../bin/stratum.js');
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };
const AMD64: Platform = { os: 'linux', architecture: 'amd64' };

function sha(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

const enabled = isRoot && process.arch === 'x64' && canMakeMultiPlatformBase();

describe.skipIf(!enabled)('multi-platform builds (amd64 + arm64 through QEMU)', () => {
  let dir = '';
  let base: MultiPlatformBase;
  let baseRef = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-platforms-'));
    base = writeMultiPlatformBase(join(dir, 'base'));
    baseRef = `oci:${base.layout}:${base.tag}`;
  });
  afterAll(() => {
    if (dir !== '' && process.env['STRATUM_KEEP_TEST_DIRS'] === undefined)
      rmSync(dir, { recursive: true, force: true });
  });

  function context(name: string, dockerfile: string): string {
    const ctx = join(dir, `ctx-${name}`);
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile);
    return ctx;
  }

  async function build(
    ctx: string,
    options: Partial<BuildImageOptions>,
  ): Promise<{ digest: string; events: BuildEvent[]; warnings: readonly string[] }> {
    const events: BuildEvent[] = [];
    const result = await buildImage({
      contextDir: ctx,
      dockerfilePath: join(ctx, 'Dockerfile'),
      dockerfile: readFileSync(join(ctx, 'Dockerfile')),
      dataDir: join(dir, 'data'),
      cacheDir: join(dir, 'cache'),
      network: 'none',
      ...options,
      onEvent: (event) => events.push(event),
    });
    return { digest: result.digest, events, warnings: result.warnings };
  }

  async function finalFs(ref: string, platform: Platform): Promise<ReadonlyMap<string, FsEntry>> {
    const image = await openImage(ref, { platform });
    try {
      const applied = await applyLayers(image);
      return new Map([...applied.fs.nodes].map(([path, node]) => [path.replace(/^\/+/, ''), node.entry]));
    } finally {
      await image.close();
    }
  }

  const CROSS = (from: string): string => `FROM --platform=$BUILDPLATFORM ${from} AS native
RUN uname -m > /native-arch

FROM --platform=$BUILDPLATFORM ${from} AS cross
ARG TARGETARCH
RUN echo "compiled on $(uname -m) for $TARGETARCH" > /cross

FROM ${from}
ARG TARGETARCH
ARG TARGETPLATFORM
ARG BUILDPLATFORM
RUN uname -m > /arch && echo "$TARGETARCH $TARGETPLATFORM $BUILDPLATFORM" > /args
COPY --from=native /native-arch /native-arch
COPY --from=cross /cross /cross
`;

  it('builds linux/amd64,linux/arm64 into one index: uname -m, TARGET* per platform, $BUILDPLATFORM stages natively', async () => {
    const ctx = context('cross', CROSS(baseRef));
    const out = join(dir, 'out-cross');
    const { events } = await build(ctx, {
      platform: 'linux/amd64,linux/arm64',
      outputs: [`oci:${out}:multi`],
    });

    // index.json → an image index with one manifest per platform, platform fields set.
    const top = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; digest: string }[];
    };
    expect(top.manifests).toHaveLength(1);
    expect(top.manifests[0]!.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const index = JSON.parse(
      readFileSync(join(out, 'blobs/sha256', top.manifests[0]!.digest.slice(7)), 'utf8'),
    ) as { manifests: { platform: Platform }[] };
    expect(index.manifests.map((entry) => entry.platform)).toEqual([AMD64, ARM64]);

    const amd = await finalFs(`oci:${out}:multi`, AMD64);
    const arm = await finalFs(`oci:${out}:multi`, ARM64);
    expect(amd.get('arch')?.sha256).toBe(sha('x86_64\n'));
    expect(arm.get('arch')?.sha256).toBe(sha('aarch64\n'));
    expect(amd.get('args')?.sha256).toBe(sha('amd64 linux/amd64 linux/amd64\n'));
    expect(arm.get('args')?.sha256).toBe(sha('arm64 linux/arm64 linux/amd64\n'));
    // The $BUILDPLATFORM stages ran natively, and their output is in both images.
    expect(amd.get('native-arch')?.sha256).toBe(sha('x86_64\n'));
    expect(arm.get('native-arch')?.sha256).toBe(sha('x86_64\n'));
    expect(amd.get('cross')?.sha256).toBe(sha('compiled on x86_64 for amd64\n'));
    expect(arm.get('cross')?.sha256).toBe(sha('compiled on x86_64 for arm64\n'));

    // The image configs carry their platform.
    for (const platform of [AMD64, ARM64]) {
      const image = await openImage(`oci:${out}:multi`, { platform });
      expect(image.config.value.architecture).toBe(platform.architecture);
      expect(image.config.value.os).toBe('linux');
      await image.close();
    }

    // `native` does not depend on the target: built once for both. `cross` declares TARGETARCH: once each.
    const starts = events.flatMap((event) => (event.kind === 'stage-start' ? [event.stage] : []));
    expect(starts.filter((stage) => stage.startsWith('native'))).toEqual(['native']);
    expect(starts.filter((stage) => stage.startsWith('cross')).sort()).toEqual([
      'cross (linux/amd64)',
      'cross (linux/arm64)',
    ]);
  });

  it('one foreign platform builds one image for it; a rebuild is served from the cache per platform', async () => {
    const ctx = context('single-arm', `FROM ${baseRef}\nRUN uname -m > /arch\n`);
    const out = join(dir, 'out-single-arm');
    await build(ctx, { platform: 'linux/arm64/v8', outputs: [`oci:${out}:arm`] });
    const image = await openImage(`oci:${out}:arm`, { platform: ARM64 });
    expect(image.config.value.architecture).toBe('arm64');
    await image.close();
    expect((await finalFs(`oci:${out}:arm`, ARM64)).get('arch')?.sha256).toBe(sha('aarch64\n'));

    // Same Dockerfile for amd64: the cache key includes the platform, so no arm64 layer is reused.
    const amdOut = join(dir, 'out-single-amd');
    await build(ctx, { platform: 'linux/amd64', outputs: [`oci:${amdOut}:amd`] });
    expect((await finalFs(`oci:${amdOut}:amd`, AMD64)).get('arch')?.sha256).toBe(sha('x86_64\n'));
    const again = await build(ctx, { platform: 'linux/arm64', outputs: [`oci:${out}:arm2`] });
    expect(again.events.some((event) => event.kind === 'step-output')).toBe(false);
  });

  it("a single-platform base whose config names another platform gets BuildKit's warning", async () => {
    const amdOnly = `oci:${base.perPlatform.amd64.layout}:amd64`;
    const ctx = context('mismatch', `FROM ${amdOnly}\nLABEL x=1\n`);
    const { warnings } = await build(ctx, {
      platform: 'linux/arm64',
      outputs: [`oci:${join(dir, 'out-mismatch')}:m`],
    });
    expect(warnings).toContain(
      `InvalidBaseImagePlatform: Base image ${amdOnly} was pulled with platform "linux/amd64", expected "linux/arm64" for current build (line 1)`,
    );
    const matching = await build(ctx, {
      platform: 'linux/amd64',
      outputs: [`oci:${join(dir, 'out-mismatch')}:a`],
    });
    expect(matching.warnings.filter((warning) => warning.includes('InvalidBaseImagePlatform'))).toEqual([]);
  });

  it('writes the index to oci-archive: and the local store, which serve as multi-platform bases; inspect lists the platforms', async () => {
    const ctx = context('outputs', `FROM ${baseRef}\nARG TARGETARCH\nRUN echo $TARGETARCH > /t\n`);
    const archive = join(dir, 'multi.tar');
    await build(ctx, {
      platform: 'linux/amd64,linux/arm64',
      outputs: [`oci-archive:${archive}:v1`],
      tags: ['stratum-i14/multi:1'],
    });
    for (const ref of [`oci-archive:${archive}:v1`, 'stratum-i14/multi:1']) {
      const fs = await finalFsFrom(ref);
      expect(fs.get('t')?.sha256).toBe(sha('arm64\n'));
    }
    const inspect = execFileSync(
      'node',
      [CLI, 'inspect', `oci-archive:${archive}:v1`, '--platform', 'linux/arm64'],
      {
        encoding: 'utf8',
        env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data') },
      },
    );
    expect(inspect).toMatch(/Platform:\s+linux\/arm64/);
    expect(inspect).toMatch(/Platforms:\s+linux\/amd64, linux\/arm64/);

    // copy --all takes the whole index (from the store to a layout); push --all puts it in a registry (below).
    const copied = join(dir, 'copied-all');
    execFileSync('node', [CLI, 'copy', '--all', 'stratum-i14/multi:1', `oci:${copied}:all`], {
      env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data') },
    });
    expect((await finalFs(`oci:${copied}:all`, ARM64)).get('t')?.sha256).toBe(sha('arm64\n'));
    expect((await finalFs(`oci:${copied}:all`, AMD64)).get('t')?.sha256).toBe(sha('amd64\n'));

    // The index is a base too: from the oci-archive and from the store, each platform picks its image.
    for (const from of [`oci-archive:${archive}:v1`, 'stratum-i14/multi:1']) {
      const next = context(`from-${from.length}`, `FROM ${from}\nLABEL derived=yes\n`);
      const out = join(dir, `out-from-${from.length}`);
      await build(next, { platform: 'linux/arm64,linux/amd64', outputs: [`oci:${out}:d`] });
      expect((await finalFs(`oci:${out}:d`, ARM64)).get('t')?.sha256).toBe(sha('arm64\n'));
      expect((await finalFs(`oci:${out}:d`, AMD64)).get('t')?.sha256).toBe(sha('amd64\n'));
    }
  });

  async function finalFsFrom(ref: string): Promise<ReadonlyMap<string, FsEntry>> {
    const image = await openImage(ref, { platform: ARM64, dataDir: join(dir, 'data') });
    try {
      const applied = await applyLayers(image);
      return new Map([...applied.fs.nodes].map(([path, node]) => [path.replace(/^\/+/, ''), node.entry]));
    } finally {
      await image.close();
    }
  }

  describe.skipIf(!requireTool('oci-image-tool', 'oci-image-tool') || !requireTool('skopeo', 'skopeo'))(
    'other tools read the index',
    () => {
      it('oci-image-tool validates the layout and skopeo inspects each platform', () => {
        const out = join(dir, 'out-cross');
        const validated = spawnSync(
          'oci-image-tool',
          ['validate', '--type', 'image', '--ref', 'name=multi', out],
          {
            encoding: 'utf8',
          },
        );
        expect(validated.stdout + validated.stderr).toMatch(/Validation succeeded/);
        const raw = JSON.parse(
          execFileSync('skopeo', ['inspect', '--raw', `oci:${out}:multi`], { encoding: 'utf8' }),
        ) as {
          mediaType: string;
          manifests: { platform: Platform }[];
        };
        expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
        for (const arch of ['amd64', 'arm64']) {
          const info = JSON.parse(
            execFileSync('skopeo', ['--override-arch', arch, 'inspect', `oci:${out}:multi`], {
              encoding: 'utf8',
            }),
          ) as { Architecture: string };
          expect(info.Architecture).toBe(arch);
        }
      });
    },
  );

  describe.skipIf(!requireTool('docker-registry', 'docker-registry') || !requireTool('skopeo', 'skopeo'))(
    'through a registry',
    () => {
      let registry: RunningRegistry;
      beforeAll(async () => {
        registry = await startRegistry();
        // The two-platform base goes to the registry as an index (skopeo --all), for both builders.
        execFileSync('skopeo', [
          'copy',
          '--quiet',
          '--all',
          '--dest-tls-verify=false',
          `oci:${base.layout}:${base.tag}`,
          `docker://${registry.host}/i14/base:1`,
        ]);
      });
      afterAll(async () => {
        await registry.stop();
      });

      it('build --push puts the index: skopeo inspect --raw shows it, skopeo copy --all reads it back', async () => {
        const ctx = context('push', `FROM ${registry.host}/i14/base:1\nRUN uname -m > /arch\n`);
        const ref = `${registry.host}/i14/pushed:1`;
        const { digest } = await build(ctx, { platform: 'linux/amd64,linux/arm64', tags: [ref], push: true });
        const raw = JSON.parse(
          execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
            encoding: 'utf8',
          }),
        ) as { mediaType: string; manifests: { digest: string; platform: Platform }[] };
        expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
        expect(raw.manifests.map((entry) => entry.platform)).toEqual([AMD64, ARM64]);
        const pushedDigest = execFileSync(
          'skopeo',
          ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${ref}`],
          { encoding: 'utf8' },
        ).trim();
        expect(pushedDigest).toBe(digest); // the tag names the index the build reported

        const copy = join(dir, 'copied');
        execFileSync('skopeo', [
          'copy',
          '--quiet',
          '--all',
          '--src-tls-verify=false',
          `docker://${ref}`,
          `oci:${copy}:back`,
        ]);
        expect((await finalFs(`oci:${copy}:back`, ARM64)).get('arch')?.sha256).toBe(sha('aarch64\n'));
        expect((await finalFs(`oci:${copy}:back`, AMD64)).get('arch')?.sha256).toBe(sha('x86_64\n'));
        // stratum push --all of a local multi-platform image puts the same index.
        const archive = join(dir, 'multi.tar');
        const pushedAgain = execFileSync(
          'node',
          [CLI, 'push', '--all', '-q', `oci-archive:${archive}:v1`, `docker://${registry.host}/i14/again:1`],
          { encoding: 'utf8', env: { ...process.env, STRATUM_DATA_DIR: join(dir, 'data') } },
        ).trim();
        const again = JSON.parse(
          execFileSync(
            'skopeo',
            ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/i14/again:1`],
            {
              encoding: 'utf8',
            },
          ),
        ) as { mediaType: string; manifests: unknown[] };
        expect(again.mediaType).toBe('application/vnd.oci.image.index.v1+json');
        expect(again.manifests).toHaveLength(2);
        expect(pushedAgain).toMatch(/^sha256:/);

        // stratum reads the registry's index too, for either platform.
        const arm = await openImage(`docker://${ref}`, { platform: ARM64 });
        expect(arm.config.value.architecture).toBe('arm64');
        expect(arm.chosenFrom?.platforms).toEqual([AMD64, ARM64]);
        await arm.close();
      });

      const dockerReady =
        requireTool('docker', 'docker.io') && spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0;

      // BuildKit (unlike the classic builder stratum follows) adds a layer for a WORKDIR that
      // changes nothing and leaves RUN's mount points in the layer when the base lacks them: the
      // base has /dev, /proc and /sys, and the Dockerfile has no WORKDIR, so the images must match.
      it.skipIf(!dockerReady)(
        'parity per platform with BuildKit (docker build --platform), instruction by instruction',
        async () => {
          const from = `${registry.host}/i14/base:1`;
          const ctx = context(
            'parity',
            `FROM --platform=$BUILDPLATFORM ${from} AS native
ARG TARGETARCH
RUN echo "built on $(uname -m) for $TARGETARCH" > /native.txt

FROM ${from}
ARG TARGETPLATFORM
ARG TARGETARCH
ENV TARGET=$TARGETPLATFORM
RUN uname -m > /arch && echo "$TARGETARCH" > /t && mkdir -p /app
COPY --from=native /native.txt /app/native.txt
COPY hello.txt /app/
CMD ["sh"]
`,
          );
          writeFileSync(join(ctx, 'hello.txt'), 'hello\n');
          const out = join(dir, 'out-parity');
          await build(ctx, { platform: 'linux/amd64,linux/arm64', outputs: [`oci:${out}:p`] });
          for (const platform of [AMD64, ARM64]) {
            const tag = `stratum-i14-parity-${platform.architecture}-${process.pid}:latest`;
            const docker = spawnSync(
              '/usr/bin/docker',
              ['build', '--network=none', '--platform', `linux/${platform.architecture}`, '-t', tag, ctx],
              { env: { ...process.env, DOCKER_BUILDKIT: '1' }, encoding: 'utf8' },
            );
            expect(docker.status, docker.stderr).toBe(0);
            const archive = join(dir, `parity-${platform.architecture}.tar`);
            try {
              execFileSync('/usr/bin/docker', ['save', '-o', archive, tag]);
            } finally {
              spawnSync('/usr/bin/docker', ['rmi', '-f', tag], { stdio: 'ignore' });
            }
            const dockerImage = await openImage(`docker-archive:${archive}`);
            const stratumImage = await openImage(`oci:${out}:p`, { platform });
            try {
              expect(dockerImage.config.value.architecture).toBe(platform.architecture);
              expect(stratumImage.config.value.architecture).toBe(platform.architecture);
              const diff = await diffImages(dockerImage, stratumImage, {});
              expect(diff.equivalent, `${formatPlatform(platform)}:\n${formatImageDiff(diff)}`).toBe(true);
            } finally {
              await dockerImage.close();
              await stratumImage.close();
            }
          }
        },
      );
    },
  );

  it('bad input: unknown platform, a base lacking the platform, a missing QEMU handler: one line, exit 1 or 2, nothing written', () => {
    const ctx = context('bad', `FROM ${baseRef}\nRUN true\n`);
    const env = {
      ...process.env,
      STRATUM_DATA_DIR: join(dir, 'data'),
      STRATUM_CACHE_DIR: join(dir, 'cache'),
    };
    const stratum = (args: readonly string[], extraEnv: Record<string, string> = {}) =>
      spawnSync('node', [CLI, 'build', ctx, '--network', 'none', '--progress', 'quiet', ...args], {
        encoding: 'utf8',
        env: { ...env, ...extraEnv },
      });
    const out = join(dir, 'bad-out');

    const unknown = stratum(['--platform', 'linux/amd64,linux/arm65', '-o', `oci:${out}`]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toMatch(
      /--platform: invalid platform "linux\/arm65": unknown architecture "arm65"/,
    );

    const lacking = stratum(['--platform', 'linux/s390x', '-o', `oci:${out}`]);
    expect(lacking.status).toBe(1);
    // One error line; a Dockerfile error is followed by its source line and a caret.
    expect(
      lacking.stderr
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('stratum:')),
    ).toHaveLength(1);
    expect(lacking.stderr.trim().split('\n').length).toBeLessThanOrEqual(3);
    expect(lacking.stderr).toMatch(/Dockerfile:1.*linux\/s390x.*linux\/amd64, linux\/arm64/);

    const noHandler = stratum(['--platform', 'linux/arm64', '-o', `oci:${out}`], {
      STRATUM_QEMU_HANDLER: 'qemu-stratum-i14-missing',
    });
    expect(noHandler.status).toBe(1);
    // One error line; a Dockerfile error is followed by its source line and a caret.
    expect(
      noHandler.stderr
        .trim()
        .split('\n')
        .filter((line) => line.startsWith('stratum:')),
    ).toHaveLength(1);
    expect(noHandler.stderr.trim().split('\n').length).toBeLessThanOrEqual(3);
    expect(noHandler.stderr).toMatch(
      /Dockerfile:1: RUN for linux\/arm64 needs QEMU user emulation, but no binfmt_misc handler "qemu-stratum-i14-missing" is registered.*apt-get install qemu-user-static/,
    );

    const archive = stratum([
      '--platform',
      'linux/amd64,linux/arm64',
      '-o',
      `docker-archive:${join(dir, 'x.tar')}`,
    ]);
    expect(archive.status).toBe(2);
    expect(archive.stderr).toMatch(/docker-archive holds one platform.*linux\/amd64, linux\/arm64/);

    expect(spawnSync('ls', [out]).status).not.toBe(0);
  });
});
