// A two-platform build (linux/amd64 + linux/arm64, RUN under QEMU for arm64) of a small
// Dockerfile: stratum in one run (`--platform linux/amd64,linux/arm64`, an image index) against
// BuildKit as Docker 20.10 has it, which builds one platform per `docker build`, so its two runs
// are summed. Both pull the same two-platform busybox base from a local registry. Runs alternate
// (stratum, BuildKit, stratum, ...) so that the shared machine's load falls on both alike.
// Never asserts timings.
//
//   npm run build && node bench/platforms.js          # BENCH_ROUNDS=3 (default)
//
// Needs root, qemu-user-static registered in binfmt_misc (see .ci/run), docker-registry,
// skopeo, a Docker daemon, and busybox-static:arm64 (downloaded once with apt into /var/tmp).
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { makeBusyboxRootfs, writeBaseImage } from '../examples/busybox-base.js';
import { fmtS, machineNote, median, run, stratumBin, timed } from './lib/harness.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const ARM64_BUSYBOX = '/var/tmp/stratum-test-busybox-static/arm64/bin/busybox';

function arm64Busybox() {
  if (existsSync(ARM64_BUSYBOX)) return ARM64_BUSYBOX;
  const dir = join(ARM64_BUSYBOX, '../..');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  if (!run('dpkg', ['--print-foreign-architectures']).split('\n').includes('arm64')) {
    run('dpkg', ['--add-architecture', 'arm64']);
    run('apt-get', ['update', '-qq']);
  }
  run('apt-get', ['download', 'busybox-static:arm64'], { cwd: dir });
  const deb = readdirSync(dir).find((name) => name.endsWith('.deb'));
  run('dpkg-deb', ['-x', join(dir, deb), join(dir, 'unpacked')]);
  copyFileSync(join(dir, 'unpacked/bin/busybox'), ARM64_BUSYBOX);
  return ARM64_BUSYBOX;
}

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** amd64 + arm64 busybox images in one OCI layout whose index.json tag `1` names an image index. */
function multiPlatformBase(dir) {
  const layout = join(dir, 'multi');
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  const manifests = [];
  for (const [arch, busybox] of [
    ['amd64', '/bin/busybox'],
    ['arm64', arm64Busybox()],
  ]) {
    const rootfs = join(dir, `rootfs-${arch}`);
    mkdirSync(rootfs, { recursive: true });
    makeBusyboxRootfs(rootfs);
    copyFileSync(busybox, join(rootfs, 'bin/busybox'));
    for (const mountPoint of ['dev', 'proc', 'sys']) mkdirSync(join(rootfs, mountPoint), { recursive: true });
    const single = writeBaseImage(rootfs, join(dir, arch), `bench/base:${arch}`, {
      architecture: arch,
      createdBy: 'busybox base for stratum benchmarks',
    }).layout;
    const entry = JSON.parse(readFileSync(join(single, 'index.json'), 'utf8')).manifests[0];
    for (const blob of readdirSync(join(single, 'blobs/sha256')))
      copyFileSync(join(single, 'blobs/sha256', blob), join(layout, 'blobs/sha256', blob));
    manifests.push({
      mediaType: entry.mediaType,
      digest: entry.digest,
      size: entry.size,
      platform: { architecture: arch, os: 'linux' },
    });
  }
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests,
  });
  writeFileSync(join(layout, 'blobs/sha256', sha256(index)), index);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: `sha256:${sha256(index)}`,
          size: Buffer.byteLength(index),
          annotations: { 'org.opencontainers.image.ref.name': '1' },
        },
      ],
    }),
  );
  return layout;
}

const dir = join('/var/tmp', `stratum-bench-platforms-${process.pid}`);
mkdirSync(join(dir, 'tmp'), { recursive: true });
const port = await freePort();
const registryHost = `127.0.0.1:${port}`;
writeFileSync(
  join(dir, 'registry.yml'),
  `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'registry')}\nhttp:\n  addr: ${registryHost}\n`,
);
const registry = spawn('docker-registry', ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' });
try {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const layout = multiPlatformBase(dir);
  run('skopeo', [
    'copy',
    '--quiet',
    '--all',
    '--dest-tls-verify=false',
    `oci:${layout}:1`,
    `docker://${registryHost}/bench/base:1`,
  ]);

  const context = join(dir, 'ctx');
  mkdirSync(context);
  writeFileSync(join(context, 'app.txt'), 'app\n');
  writeFileSync(
    join(context, 'Dockerfile'),
    `FROM --platform=$BUILDPLATFORM ${registryHost}/bench/base:1 AS build
ARG TARGETARCH
RUN echo "built on $(uname -m) for $TARGETARCH" > /out.txt

FROM ${registryHost}/bench/base:1
ARG TARGETARCH
RUN uname -m > /arch && i=0 && while [ $i -lt 200 ]; do echo $i > /tmp/f$i; i=$((i+1)); done
COPY --from=build /out.txt /out.txt
COPY app.txt /app.txt
`,
  );

  console.log(`machine: ${machineNote()}`);
  const stratumTimes = [];
  const buildkitTimes = [];
  for (let round = 0; round < rounds; round++) {
    // stratum cold: empty cache and data dirs, so the base is pulled from the registry again.
    const env = {
      ...process.env,
      STRATUM_DATA_DIR: join(dir, `data-${round}`),
      STRATUM_CACHE_DIR: join(dir, `cache-${round}`),
      TMPDIR: join(dir, 'tmp'),
    };
    const stratum = await timed(
      'node',
      [
        stratumBin,
        'build',
        context,
        '--network',
        'none',
        '--progress',
        'quiet',
        '--platform',
        'linux/amd64,linux/arm64',
        '-o',
        `oci:${join(dir, `out-${round}`)}:x`,
      ],
      { env },
    );
    stratumTimes.push(stratum.seconds);
    // BuildKit in Docker 20.10: one platform per build, --no-cache; the image stays in Docker.
    let buildkit = 0;
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      const tag = `stratum-i14-bench-${platform.replace('/', '-')}:${round}`;
      const result = await timed(
        '/usr/bin/docker',
        ['build', '-q', '--no-cache', '--network=none', '--platform', platform, '-t', tag, context],
        { env: { ...process.env, DOCKER_BUILDKIT: '1' } },
      );
      buildkit += result.seconds;
      execFileSync('/usr/bin/docker', ['rmi', '-f', tag], { stdio: 'ignore' });
    }
    buildkitTimes.push(buildkit);
    console.log(
      `round ${round + 1}: stratum ${fmtS(stratum.seconds)}, BuildKit (amd64 + arm64) ${fmtS(buildkit)}`,
    );
  }
  const s = median(stratumTimes);
  const b = median(buildkitTimes);
  console.log(
    `median of ${rounds}: stratum ${fmtS(s)}, BuildKit ${fmtS(b)}, BuildKit ÷ stratum ${(b / s).toFixed(2)}×`,
  );
} finally {
  registry.kill();
  if (!process.env.BENCH_KEEP) execFileSync('rm', ['-rf', dir]);
}
