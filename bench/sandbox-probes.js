// The RUN sandbox's floor, side by side with BuildKit: the probes of test/cli/sandbox-attacks.test.ts
// (examples/sandbox-probes.js) run as root and as USER 65534 in a stratum build and in
// `DOCKER_BUILDKIT=1 /usr/bin/docker build` (and the classic builder), on the same base, and a
// table of what each step could do. The host device is a loop device over a scratch file.
// Run as root: npm run build && node bench/sandbox-probes.js
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeBusyboxRootfs, writeBaseImage } from '../examples/busybox-base.js';
import { MARKER, deviceNumbers, parseProbes, probeScript, probeSource } from '../examples/sandbox-probes.js';

const BIN = resolve(import.meta.dirname, '../bin/stratum.js');
const DOCKER = '/usr/bin/docker';
const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-probes-'));
let loop;
try {
  const disk = join(dir, 'disk.img');
  const content = Buffer.alloc(1 << 20);
  content.write(MARKER);
  writeFileSync(disk, content);
  loop = execFileSync('losetup', ['-f', '--show', disk], { encoding: 'utf8' }).trim();
  const [major, minor] = deviceNumbers(statSync(loop).rdev);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  makeBusyboxRootfs(rootfs);
  execFileSync('mknod', ['-m', '0666', join(rootfs, 'host-disk'), 'b', String(major), String(minor)]);
  const base = writeBaseImage(rootfs, join(dir, 'base'), 'stratum-bench/probes-base:1');

  const ctx = join(dir, 'ctx');
  mkdirSync(ctx);
  writeFileSync(join(dir, 'probe.c'), probeSource);
  execFileSync('gcc', ['-static', '-O1', '-o', join(ctx, 'probe'), join(dir, 'probe.c')]);
  writeFileSync(join(ctx, 'probe.sh'), probeScript);
  const dockerfile = (from) =>
    [
      `FROM ${from}`,
      `ENV MAJOR=${major} MINOR=${minor}`,
      'COPY probe probe.sh /',
      'RUN chmod 1777 /tmp && sh /probe.sh',
      'USER 65534',
      'RUN sh /probe.sh',
      '',
    ].join('\n');
  writeFileSync(join(ctx, 'Dockerfile.stratum'), dockerfile(`oci:${base.layout}:1`));
  writeFileSync(join(ctx, 'Dockerfile.docker'), dockerfile('stratum-bench/probes-base:1'));

  const columns = [];
  const stratum = spawnSync(
    process.execPath,
    [
      BIN,
      'build',
      ctx,
      '-f',
      join(ctx, 'Dockerfile.stratum'),
      '--no-cache',
      '--progress',
      'plain',
      '--network',
      'none',
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, STRATUM_CACHE_DIR: join(dir, 'cache'), STRATUM_DATA_DIR: join(dir, 'data') },
    },
  );
  columns.push(['stratum', parseProbes(stratum.stdout + stratum.stderr)]);
  if (spawnSync(DOCKER, ['info'], { stdio: 'ignore' }).status === 0) {
    execFileSync(DOCKER, ['load', '-i', base.dockerArchive], { stdio: 'ignore' });
    for (const [name, buildkit] of [
      ['BuildKit', '1'],
      ['classic', '0'],
    ]) {
      const built = spawnSync(
        DOCKER,
        [
          'build',
          '--no-cache',
          '--network',
          'none',
          '-f',
          join(ctx, 'Dockerfile.docker'),
          ...(buildkit === '1' ? ['--progress', 'plain'] : []),
          ctx,
        ],
        { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: buildkit } },
      );
      columns.push([name, parseProbes(built.stdout + built.stderr)]);
    }
    spawnSync(DOCKER, ['rmi', 'stratum-bench/probes-base:1'], { stdio: 'ignore' });
  } else console.log('(no Docker daemon: the BuildKit and classic columns are left out)');

  const keys = [...new Set(columns.flatMap(([, found]) => [...found.keys()]))].sort();
  console.log(`| probe (uid) | ${columns.map(([name]) => name).join(' | ')} |`);
  console.log(`|---|${columns.map(() => '---|').join('')}`);
  for (const key of keys) {
    const [uid, probe] = key.split(' ');
    const cell = (value) =>
      value === undefined ? '—' : value.includes(MARKER) ? '**read the host device**' : value;
    console.log(`| ${probe} (${uid}) | ${columns.map(([, found]) => cell(found.get(key))).join(' | ')} |`);
  }
} finally {
  if (loop !== undefined) spawnSync('losetup', ['-d', loop]);
  rmSync(dir, { recursive: true, force: true });
}
