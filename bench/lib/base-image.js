// The busybox base image every builder starts from, made here because nothing can be pulled.
// A plain-JS copy of test/helpers/base-image.ts (benchmarks run from dist/, not from src/ or
// test/): Debian's busybox-static as a rootfs, packed once with GNU tar, written both as an OCI
// layout (for stratum and buildah) and as a docker-archive (for `docker load`), so all builders
// start from identical layer bytes.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export const BUSYBOX = '/bin/busybox';

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

/** Lays out a busybox root filesystem in `dir` (which must exist and be empty). */
export function makeBusyboxRootfs(dir) {
  for (const sub of ['bin', 'etc', 'root', 'tmp', 'home/app', 'usr/bin', 'var'])
    mkdirSync(join(dir, sub), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  chmodSync(join(dir, 'root'), 0o700);
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((name) => name !== '' && name !== 'busybox');
  for (const applet of applets) symlinkSync('busybox', join(dir, 'bin', applet));
  writeFileSync(join(dir, 'etc/passwd'), PASSWD);
  writeFileSync(join(dir, 'etc/group'), GROUP);
  execFileSync('chown', ['1000:1000', join(dir, 'home/app')]);
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Packs `rootfs` (sorted, numeric owners, fixed mtime) and writes it as an OCI layout at
 * OUT/layout (tag taken from `repoTag`) and as a docker-archive at OUT/base.docker.tar.
 * Returns { layout, dockerArchive, diffId }.
 */
export function writeBaseImage(rootfs, outDir, repoTag, architecture = 'amd64') {
  const realTar = execFileSync(
    'tar',
    ['-C', rootfs, '--sort=name', '--numeric-owner', '--mtime=@1700000000', '-cf', '-', '.'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const diffId = `sha256:${sha256(realTar)}`;
  const gz = gzipSync(realTar);
  const layerDigest = sha256(gz);
  const config = JSON.stringify({
    architecture,
    os: 'linux',
    created: '2023-11-14T22:13:20Z',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: '2023-11-14T22:13:20Z', created_by: 'busybox base for stratum benchmarks' }],
  });
  const configDigest = sha256(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${configDigest}`,
      size: Buffer.byteLength(config),
    },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${layerDigest}`,
        size: gz.length,
      },
    ],
  });
  const manifestDigest = sha256(manifest);

  const layout = join(outDir, 'layout');
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(layout, 'blobs/sha256', layerDigest), gz);
  writeFileSync(join(layout, 'blobs/sha256', configDigest), config);
  writeFileSync(join(layout, 'blobs/sha256', manifestDigest), manifest);
  const tag = repoTag.slice(repoTag.lastIndexOf(':') + 1);
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${manifestDigest}`,
          size: Buffer.byteLength(manifest),
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );

  const archiveDir = join(outDir, 'docker-archive');
  mkdirSync(join(archiveDir, 'layer'), { recursive: true });
  writeFileSync(join(archiveDir, 'layer/layer.tar'), realTar);
  writeFileSync(join(archiveDir, `${configDigest}.json`), config);
  writeFileSync(
    join(archiveDir, 'manifest.json'),
    JSON.stringify([{ Config: `${configDigest}.json`, RepoTags: [repoTag], Layers: ['layer/layer.tar'] }]),
  );
  const dockerArchive = join(outDir, 'base.docker.tar');
  execFileSync('tar', ['-C', archiveDir, '-cf', dockerArchive, '.']);
  return { layout, dockerArchive, diffId };
}
