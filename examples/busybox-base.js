// The one busybox base builder: tests (test/helpers/base-image.ts), benchmarks (bench/) and
// examples/make-busybox-base.sh all make their base here, because nothing can be pulled.
// Plain JS so every caller can load it as is: TS tests (through busybox-base.d.ts), the JS
// benchmarks (which run against dist/) and the shell script (through node).
//
// A busybox userland from Debian's busybox-static plus the /etc files a Dockerfile expects
// (users, groups, a home), packed with GNU tar (sorted, numeric owners, fixed mtime) and written
// as an OCI layout and, for `docker load`, as a docker-archive: every builder starts from the
// same layer bytes, and the same busybox binary always gives the same image digest.
//
//   node examples/busybox-base.js DIR [CREATED_BY]   # an OCI layout in DIR, tag `latest`
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const BUSYBOX = process.env.BUSYBOX ?? '/bin/busybox';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false',
  'app:x:1000:1000:app user:/home/app:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'daemon:x:1:', 'app:x:1000:', 'staff:x:50:app', 'nogroup:x:65534:', ''].join(
  '\n',
);

const isRoot = process.getuid?.() === 0;

/**
 * Lays out a busybox root filesystem in `dir` (which must exist and be empty). `busybox` is the
 * binary to install (another architecture's, for multi-platform bases); the applet list comes
 * from the host's, the same Debian version. As root, home/app belongs to app; otherwise the
 * layer records every entry as root's (writeBaseImage).
 */
export function makeBusyboxRootfs(dir, busybox = BUSYBOX) {
  // dev, proc and sys as every real base has them: a runtime that needs a mount point it lacks
  // (Docker 20.10's BuildKit) would leave it in a RUN's layer.
  for (const sub of ['bin', 'dev', 'etc', 'proc', 'root', 'sys', 'tmp', 'home/app', 'usr/bin', 'var'])
    mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  chmodSync(join(dir, 'root'), 0o700);
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((name) => name !== '' && name !== 'busybox');
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'etc/passwd'), PASSWD);
  writeFileSync(join(dir, 'etc/group'), GROUP);
  if (isRoot) execFileSync('chown', ['1000:1000', join(dir, 'home/app')]);
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/** Packs `rootfs` into one layer and the config and manifest that go with it. */
function packImage(rootfs, options) {
  const tar = execFileSync(
    'tar',
    [
      '-C',
      rootfs,
      '--sort=name',
      '--numeric-owner',
      ...(isRoot ? [] : ['--owner=0', '--group=0']),
      '--mtime=@1700000000',
      '-cf',
      '-',
      '.',
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const diffId = `sha256:${sha256(tar)}`;
  const gz = gzipSync(tar);
  const config = JSON.stringify({
    architecture: options.architecture ?? 'amd64',
    os: 'linux',
    created: '2023-11-14T22:13:20Z',
    config: options.withoutEnv
      ? { Cmd: ['sh'] }
      : { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [
      { created: '2023-11-14T22:13:20Z', created_by: options.createdBy ?? 'busybox base for stratum tests' },
    ],
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${sha256(config)}`,
      size: Buffer.byteLength(config),
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${sha256(gz)}`,
        size: gz.length,
      },
    ],
  });
  return { tar, gz, diffId, config, manifest };
}

/** Writes a packed image as an OCI layout in `layout`, tagged `tag`. */
function writeLayout(layout, image, tag) {
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(layout, 'blobs/sha256', sha256(image.gz)), image.gz);
  writeFileSync(join(layout, 'blobs/sha256', sha256(image.config)), image.config);
  writeFileSync(join(layout, 'blobs/sha256', sha256(image.manifest)), image.manifest);
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(image.manifest)}`,
          size: Buffer.byteLength(image.manifest),
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}

/**
 * Packs `rootfs` and writes it both as an OCI layout (OUT/layout, tag taken from `repoTag`) and
 * as a docker-archive (OUT/base.docker.tar, tagged `repoTag`). The config sets PATH as Docker
 * images usually do, unless `withoutEnv` (a base like `docker import` makes, with no Env).
 * Returns { layout, dockerArchive, diffId }.
 */
export function writeBaseImage(rootfs, outDir, repoTag, options = {}) {
  const image = packImage(rootfs, options);
  const layout = join(outDir, 'layout');
  writeLayout(layout, image, repoTag.slice(repoTag.lastIndexOf(':') + 1));

  const configName = `${sha256(image.config)}.json`;
  const archiveDir = join(outDir, 'docker-archive');
  mkdirSync(join(archiveDir, 'layer'), { recursive: true });
  writeFileSync(join(archiveDir, 'layer/layer.tar'), image.tar);
  writeFileSync(join(archiveDir, configName), image.config);
  writeFileSync(
    join(archiveDir, 'manifest.json'),
    JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: ['layer/layer.tar'] }]),
  );
  const dockerArchive = join(outDir, 'base.docker.tar');
  execFileSync('tar', ['-C', archiveDir, '-cf', dockerArchive, '.']);
  return { layout, dockerArchive, diffId: image.diffId };
}

/** Makes the rootfs in a scratch directory inside `dir` and writes only an OCI layout to `dir`. */
export function writeBusyboxLayout(dir, options = {}) {
  const rootfs = join(dir, '.rootfs');
  mkdirSync(rootfs, { recursive: true });
  try {
    makeBusyboxRootfs(rootfs);
    writeLayout(dir, packImage(rootfs, options), 'latest');
  } finally {
    execFileSync('rm', ['-rf', rootfs]);
  }
}

// Run as a script (by examples/make-busybox-base.sh).
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, createdBy] = process.argv.slice(2);
  if (dir === undefined) {
    process.stderr.write('usage: node examples/busybox-base.js DIR [CREATED_BY]\n');
    process.exit(2);
  }
  writeBusyboxLayout(dir, createdBy === undefined ? {} : { createdBy });
}
