import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffImages, type ImageDiff } from '../../src/analyze/diff.js';
import { formatImageDiff } from '../../src/analyze/format.js';
import { openImage } from '../../src/transport/images.js';
import { dockerLoad, makeParityBaseRootfs, writeBaseImage } from '../helpers/base-image.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot, requireTool } from '../helpers/system.js';

/**
 * `diff` between Docker's builder (BuildKit) and stratum on the same small Dockerfile: the images
 * must come out equivalent step by step, and a one-line change on Docker's side must show up as
 * exactly that difference, at that step. The base has the mount points a real base has, so that
 * Docker 20.10's BuildKit 0.8 leaves no mount stubs in RUN layers (see makeParityBaseRootfs).
 */

const BASE_TAG = 'stratum-test/busybox-diff:1';
/** Debian's client, which has BuildKit built in. */
const DOCKER = '/usr/bin/docker';

function dockerfile(from: string, mode: string): string {
  return [
    `FROM ${from}`,
    'ENV GREETING=hello',
    `RUN mkdir -p /app && echo "$GREETING" > /app/greeting && chmod ${mode} /app/greeting && ln /app/greeting /app/hard && ln -s greeting /app/soft`,
    'COPY file.txt /app/file.txt',
    'WORKDIR /app',
    'USER app',
    'CMD ["cat", "/app/greeting"]',
    '',
  ].join('\n');
}

function dockerBuild(context: string, tag: string): void {
  const result = spawnSync(DOCKER, ['build', '--network=none', '--no-cache', '-q', '-t', tag, context], {
    env: { ...process.env, DOCKER_BUILDKIT: '1' },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`docker build failed: ${result.stderr.trim()}`);
}

const enabled = isRoot && requireTool(DOCKER, 'docker.io');

describe.skipIf(!enabled)('stratum diff: BuildKit build vs stratum build', () => {
  let sandbox: BuildSandbox;
  let stratumRef: string;
  const tags = ['stratum-test/analyze-diff:same', 'stratum-test/analyze-diff:changed'];

  beforeAll(async () => {
    sandbox = buildSandbox();
    const rootfs = join(sandbox.dir, 'diff-base-rootfs');
    mkdirSync(rootfs);
    makeParityBaseRootfs(rootfs);
    const base = writeBaseImage(rootfs, join(sandbox.dir, 'diff-base'), BASE_TAG);
    dockerLoad(base.dockerArchive);
    const files = { 'file.txt': 'copied\n' };
    const ours = sandbox.context('stratum', {
      ...files,
      Dockerfile: dockerfile(`oci:${base.layout}:1`, '640'),
    });
    stratumRef = `oci:${join(sandbox.dir, 'out')}:latest`;
    await sandbox.build(ours, { outputs: [stratumRef] });
    const theirs = sandbox.context('docker', files);
    writeFileSync(join(theirs, 'Dockerfile'), dockerfile(BASE_TAG, '640'));
    dockerBuild(theirs, tags[0]!);
    writeFileSync(join(theirs, 'Dockerfile'), dockerfile(BASE_TAG, '600'));
    dockerBuild(theirs, tags[1]!);
  }, 180_000);

  afterAll(() => {
    spawnSync(DOCKER, ['rmi', '-f', ...tags], { stdio: 'ignore' });
    sandbox.cleanup();
  });

  async function diffWith(tag: string): Promise<ImageDiff> {
    const docker = await openImage(`docker-daemon:${tag}`);
    const ours = await sandbox.open(stratumRef);
    try {
      return await diffImages(docker, ours);
    } finally {
      await docker.close();
      await ours.close();
    }
  }

  it('the same Dockerfile gives equivalent images, step by step', async () => {
    const diff = await diffWith(tags[0]!);
    expect(diff.equivalent, formatImageDiff(diff)).toBe(true);
    expect(diff.steps).toHaveLength(7);
    expect(diff.steps[2]!.a!.createdBy).toMatch(/^RUN \/bin\/sh -c mkdir -p \/app/);
    expect(diff.steps[2]!.b!.createdBy).toMatch(/^RUN \/bin\/sh -c mkdir -p \/app/);
  }, 60_000);

  it('a chmod that differs shows up at its RUN step, on both hard-linked paths', async () => {
    const diff = await diffWith(tags[1]!);
    expect(diff.equivalent).toBe(false);
    expect(diff.steps[2]!.differences).toEqual([
      { kind: 'differs', path: 'app/greeting', fields: ['mode'], a: { mode: '0600' }, b: { mode: '0640' } },
      { kind: 'differs', path: 'app/hard', fields: ['mode'], a: { mode: '0600' }, b: { mode: '0640' } },
    ]);
    for (const [index, step] of diff.steps.entries()) if (index !== 2) expect(step.differences).toEqual([]);
  }, 60_000);
});
