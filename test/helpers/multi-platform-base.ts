import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUSYBOX, makeBusyboxRootfs, writeBaseImage, type BaseImageFiles } from './base-image.js';
import { inCI, isRoot } from './system.js';

/**
 * A two-platform test base (linux/amd64 and linux/arm64) made from Debian's busybox-static for
 * each architecture: nothing is pulled from an image registry. The arm64 package is fetched once
 * with apt (`dpkg --add-architecture arm64`, `apt-get update`, `apt-get download`) and unpacked
 * with `dpkg-deb -x` under /var/tmp, where later runs find it.
 */

const CACHE = '/var/tmp/stratum-test-busybox-static';

function run(command: string, args: readonly string[], cwd?: string): string {
  return execFileSync(command, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
}

/** The busybox-static binary for a Debian architecture (`amd64` is the host's own). */
export function busyboxFor(debianArch: string): string {
  if (debianArch === 'amd64' && process.arch === 'x64') return BUSYBOX;
  const binary = join(CACHE, debianArch, 'bin/busybox');
  if (existsSync(binary)) return binary;
  const dir = join(CACHE, debianArch);
  mkdirSync(dir, { recursive: true });
  const foreign = run('dpkg', ['--print-foreign-architectures']).split('\n');
  if (!foreign.includes(debianArch)) {
    run('dpkg', ['--add-architecture', debianArch]);
    run('apt-get', ['update', '-qq']);
  }
  const download = (): void => {
    run('apt-get', ['download', `busybox-static:${debianArch}`], dir);
  };
  try {
    download();
  } catch {
    run('apt-get', ['update', '-qq']); // the architecture was added but its lists are stale
    download();
  }
  const deb = readdirSync(dir).find((name) => name.startsWith('busybox-static_') && name.endsWith('.deb'));
  if (deb === undefined)
    throw new Error(`apt-get download busybox-static:${debianArch} left no .deb in ${dir}`);
  const unpacked = join(dir, 'unpacked');
  run('dpkg-deb', ['-x', join(dir, deb), unpacked]);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync(join(unpacked, 'bin/busybox'), binary);
  return binary;
}

/**
 * Whether the two-platform base can be made here (root, apt, network to the Debian mirror).
 * Under CI a failure throws; otherwise the caller skips with the message printed.
 */
export function canMakeMultiPlatformBase(): boolean {
  try {
    if (!isRoot) throw new Error('making the arm64 busybox base needs root (dpkg --add-architecture)');
    busyboxFor('arm64');
    return true;
  } catch (error) {
    const message = `cannot make the arm64 busybox-static base: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
    if (inCI) throw new Error(`CI is set and ${message}`);
    console.warn(`skipping: ${message}`);
    return false;
  }
}

export interface MultiPlatformBase {
  /** `oci:` layout whose index.json names, under `tag`, an image index with both platforms. */
  readonly layout: string;
  readonly tag: string;
  readonly perPlatform: Readonly<Record<'amd64' | 'arm64', BaseImageFiles>>;
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes the amd64 + arm64 busybox base as one OCI layout holding an image index. */
export function writeMultiPlatformBase(outDir: string, tag = '1'): MultiPlatformBase {
  const layout = join(outDir, 'layout');
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  const perPlatform = {} as Record<'amd64' | 'arm64', BaseImageFiles>;
  const manifests: object[] = [];
  for (const arch of ['amd64', 'arm64'] as const) {
    const rootfs = join(outDir, `rootfs-${arch}`);
    mkdirSync(rootfs, { recursive: true });
    makeBusyboxRootfs(rootfs, busyboxFor(arch));
    // Mount points exist, as in real bases: BuildKit would otherwise leave them in RUN layers.
    for (const mountPoint of ['dev', 'proc', 'sys']) mkdirSync(join(rootfs, mountPoint), { recursive: true });
    const files = writeBaseImage(rootfs, join(outDir, arch), `stratum-test/busybox-multi:${arch}`, {
      architecture: arch,
    });
    perPlatform[arch] = files;
    const single = JSON.parse(readFileSync(join(files.layout, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; digest: string; size: number }[];
    };
    const entry = single.manifests[0]!;
    for (const blob of readdirSync(join(files.layout, 'blobs/sha256')))
      copyFileSync(join(files.layout, 'blobs/sha256', blob), join(layout, 'blobs/sha256', blob));
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
  const indexDigest = sha256(index);
  writeFileSync(join(layout, 'blobs/sha256', indexDigest), index);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: `sha256:${indexDigest}`,
          size: Buffer.byteLength(index),
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { layout, tag, perPlatform };
}
