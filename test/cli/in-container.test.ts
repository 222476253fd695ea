import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs, writeBaseImage } from '../helpers/base-image.js';
import {
  DOCKER,
  dockerAvailable,
  ensureContainerImage,
  ensureNodeBase,
  runInContainer,
} from '../helpers/container-image.js';
import { imageConfig, layerListings } from '../helpers/layout.js';
import { isRoot, requireTool } from '../helpers/system.js';

const REPO = resolve(import.meta.dirname, '../..');
const EPOCH = '1700000000';

/** The settings CI users run builders in (issue 20), each with the isolation it must get. */
const settings = [
  {
    name: "Docker's defaults (Kubernetes baseline, RuntimeDefault seccomp)",
    options: [],
    isolation: 'proot',
  },
  { name: 'seccomp=unconfined', options: ['--security-opt', 'seccomp=unconfined'], isolation: 'namespaces' },
  {
    name: 'SYS_ADMIN added, seccomp=unconfined',
    options: ['--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined'],
    isolation: 'namespaces',
  },
] as const;

/**
 * stratum inside a standard container, as a CI job runs it: the checkout and the Node that runs
 * these tests mounted into a Debian image, a build with RUN as root and as USER 1000 (chown,
 * /proc, /dev/null, a symlink, a deletion, a cache mount) must give the layers and config a build
 * on the host gives.
 */
const ready =
  isRoot &&
  requireTool(DOCKER, 'docker.io') &&
  requireTool('debootstrap', 'debootstrap') &&
  dockerAvailable();

describe.skipIf(!ready)('stratum builds inside a standard container', () => {
  let dir: string;
  let hostLayers: string[][];
  let hostConfig: Record<string, unknown>;

  beforeAll(() => {
    ensureContainerImage();
    dir = mkdtempSync(join(tmpdir(), 'stratum-in-container-'));
    chmodSync(dir, 0o755);
    const rootfs = join(dir, 'base-rootfs');
    mkdirSync(rootfs);
    makeBusyboxRootfs(rootfs);
    writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
    mkdirSync(join(dir, 'ctx'));
    writeFileSync(
      join(dir, 'ctx/Dockerfile'),
      [
        'ARG BASE',
        'FROM oci:${BASE}:1',
        'RUN mkdir -p /app && echo hi > /app/f && chown 1000:1000 /app/f && chmod 640 /app/f && ln -s f /app/link && test -d /proc/self/fd && grep -c ^Name: /proc/self/status > /app/proc && echo x > /dev/null && rm /bin/yes',
        'RUN mkdir -p /home/app/data && chown 1000:1000 /home/app/data',
        'USER 1000',
        'RUN echo me > /home/app/data/mine && id -u > /home/app/data/uid && head -c 4 /dev/urandom | wc -c > /home/app/data/random',
        'USER 0',
        'RUN --mount=type=cache,target=/cache echo c > /cache/x && cp /cache/x /from-cache',
        '',
      ].join('\n'),
    );
    // The host's build, the reference.
    const host = spawnSync(
      process.execPath,
      [
        join(REPO, 'bin/stratum.js'),
        'build',
        join(dir, 'ctx'),
        '--build-arg',
        `BASE=${join(dir, 'base/layout')}`,
        '--network',
        'host',
        '--progress',
        'plain',
        '-o',
        `oci:${join(dir, 'host-out')}:x`,
      ],
      {
        encoding: 'utf8',
        env: {
          ...process.env,
          SOURCE_DATE_EPOCH: EPOCH,
          STRATUM_CACHE_DIR: join(dir, 'host-cache'),
          STRATUM_DATA_DIR: join(dir, 'host-data'),
        },
      },
    );
    if (host.status !== 0) throw new Error(`the host build failed: ${host.stderr}`);
    hostLayers = layerListings(join(dir, 'host-out'));
    hostConfig = imageConfig(join(dir, 'host-out'));
  }, 1_200_000);

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function buildInContainer(options: readonly string[], out: string, network: string) {
    return runInContainer(
      [
        'stratum',
        'build',
        '/work/ctx',
        '--build-arg',
        'BASE=/work/base/layout',
        '--network',
        network,
        '--progress',
        'plain',
        '-o',
        `oci:/work/${out}:x`,
      ],
      { docker: options, env: { SOURCE_DATE_EPOCH: EPOCH }, mounts: { [dir]: '/work' }, timeout: 300_000 },
    );
  }

  for (const [index, setting] of settings.entries()) {
    it(`${setting.name}: RUN works (${setting.isolation}, said in the log) and the image is the host build's`, () => {
      const built = buildInContainer(setting.options, `out-${index}`, 'host');
      expect(built.status, built.stderr).toBe(0);
      expect(built.stderr).toMatch(new RegExp(`^RUN isolation: ${setting.isolation} `, 'm'));
      expect(layerListings(join(dir, `out-${index}`))).toEqual(hostLayers);
      expect(imageConfig(join(dir, `out-${index}`))).toEqual(hostConfig);
    });
  }

  for (const [index, setting] of settings.entries()) {
    if (index === 0) continue; // Docker's defaults: refused, below
    it(`${setting.name}: --network none works too (the step's lo comes up)`, () => {
      const built = buildInContainer(setting.options, `none-${index}`, 'none');
      expect(built.status, built.stderr).toBe(0);
      expect(layerListings(join(dir, `none-${index}`))).toEqual(hostLayers);
    });
  }

  it("Docker's defaults: --network none is refused in one line (no network namespace can be made there)", () => {
    const built = buildInContainer([], 'refused', 'none');
    expect(built.status).toBe(1);
    expect(built.stderr).toMatch(/RUN --network none needs a network namespace, which cannot be made here/);
    expect(built.stderr).not.toMatch(/\n\s+at /);
  });

  it('a non-root container user (Kubernetes restricted) is refused in one line naming what is missing', () => {
    mkdirSync(join(dir, 'as-1000'), { mode: 0o777 });
    chmodSync(join(dir, 'as-1000'), 0o777);
    const built = buildInContainer(
      ['--user', '1000:1000', '-e', 'HOME=/tmp', '-e', 'STRATUM_CACHE_DIR=/tmp/stratum-cache'],
      'as-1000/out',
      'host',
    );
    expect(built.status).toBe(1);
    expect(built.stderr).toMatch(
      /RUN needs root here: stratum runs as uid 1000 in a container where no user namespace can be made/,
    );
    expect(built.stderr).not.toMatch(/\n\s+at /);
  });

  it("stratum's own image (the repository's Dockerfile, built by stratum) builds the same image under Docker's defaults", () => {
    const base = ensureNodeBase();
    const tag = `stratum-test/stratum-self:${process.pid}`;
    const built = spawnSync(
      process.execPath,
      [
        join(REPO, 'bin/stratum.js'),
        'build',
        REPO,
        '--build-arg',
        `BASE=oci:${base}:24`,
        '-t',
        tag,
        '--load',
        '--progress',
        'plain',
      ],
      {
        encoding: 'utf8',
        timeout: 1_200_000,
        env: {
          ...process.env,
          STRATUM_CACHE_DIR: join(dir, 'self-cache'),
          STRATUM_DATA_DIR: join(dir, 'self-data'),
        },
      },
    );
    expect(built.status, built.stderr.slice(-3000)).toBe(0);
    try {
      const help = spawnSync(DOCKER, ['run', '--rm', tag, '--help'], { encoding: 'utf8' });
      expect(help.stdout).toMatch(/^Usage: stratum /m);
      const inside = spawnSync(
        DOCKER,
        [
          'run',
          '--rm',
          '-e',
          `SOURCE_DATE_EPOCH=${EPOCH}`,
          '-v',
          `${dir}:/work`,
          tag,
          'build',
          '/work/ctx',
          '--build-arg',
          'BASE=/work/base/layout',
          '--network',
          'host',
          '--progress',
          'plain',
          '-o',
          'oci:/work/self-out:x',
        ],
        { encoding: 'utf8', timeout: 300_000 },
      );
      expect(inside.status, inside.stderr).toBe(0);
      expect(inside.stderr).toMatch(/^RUN isolation: proot /m);
      expect(layerListings(join(dir, 'self-out'))).toEqual(hostLayers);
      expect(imageConfig(join(dir, 'self-out'))).toEqual(hostConfig);
    } finally {
      spawnSync(DOCKER, ['rmi', '-f', tag], { stdio: 'ignore' });
    }
  }, 1_800_000);

  it("an apt-get step and an npm install step work under Docker's defaults (proot), on the Node base", () => {
    const base = ensureNodeBase();
    const ctx = join(dir, 'ctx-packages');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      [
        'FROM oci:/base:24',
        'RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*',
        'WORKDIR /app',
        `RUN echo '{"name":"app","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}' > package.json && npm install --no-audit --no-fund && npm ci --no-audit --no-fund`,
        'RUN hello > /app/hello.txt && node -e "process.stdout.write(String(require(\'is-number\')(5)))" > /app/node.txt',
        '',
      ].join('\n'),
    );
    const built = runInContainer(
      [
        'stratum',
        'build',
        '/work/ctx-packages',
        '--network',
        'host',
        '--progress',
        'plain',
        '-o',
        'type=local,dest=/work/packages-out',
      ],
      // The container's network: apt and npm reach their registries (this machine's only hosts).
      { docker: ['--network', 'host'], mounts: { [base]: '/base:ro', [dir]: '/work' } },
    );
    expect(built.status, built.stderr.slice(-3000)).toBe(0);
    expect(built.stderr).toMatch(/^RUN isolation: proot /m);
    expect(readFileSync(join(dir, 'packages-out/app/hello.txt'), 'utf8')).toBe('Hello, world!\n');
    expect(readFileSync(join(dir, 'packages-out/app/node.txt'), 'utf8')).toBe('true');
  }, 900_000);

  it("Docker's defaults: --ulimit reaches a step under proot, and RUN --security=insecure is refused rather than run with less", () => {
    const ctx = join(dir, 'ctx-limits');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'ARG BASE\nFROM oci:${BASE}:1\nRUN ulimit -n > /nofile\n');
    writeFileSync(
      join(ctx, 'Dockerfile.insecure'),
      'ARG BASE\nFROM oci:${BASE}:1\nRUN --security=insecure true\n',
    );
    const common = ['--build-arg', 'BASE=/work/base/layout', '--network', 'host', '--progress', 'plain'];
    const limited = runInContainer(
      [
        'stratum',
        'build',
        '/work/ctx-limits',
        ...common,
        '--ulimit',
        'nofile=512:512',
        '-o',
        'type=local,dest=/work/limits-out',
      ],
      { mounts: { [dir]: '/work' } },
    );
    expect(limited.status, limited.stderr).toBe(0);
    expect(readFileSync(join(dir, 'limits-out/nofile'), 'utf8')).toBe('512\n');
    const insecure = runInContainer(
      [
        'stratum',
        'build',
        '/work/ctx-limits',
        '-f',
        '/work/ctx-limits/Dockerfile.insecure',
        ...common,
        '--allow',
        'security.insecure',
      ],
      { mounts: { [dir]: '/work' } },
    );
    expect(insecure.status).toBe(1);
    expect(insecure.stderr).toMatch(
      /RUN --security=insecure needs every capability, which a step under proot cannot have/,
    );
  });
});
