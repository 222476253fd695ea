import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { VerifyingStream, sha256Digest } from '../../src/oci/digest.js';
import type { ImageSource } from '../../src/oci/image.js';
import { configShape, manifestShape, toRaw } from '../../src/oci/json.js';
import {
  MediaType,
  type ContainerConfig,
  type Descriptor,
  type Digest,
  type History,
  type ImageConfig,
  type ImageManifest,
} from '../../src/oci/types.js';

/**
 * Images built in memory for the analyze tests: each layer is a tar written member by member
 * (any type, mode, owner, device, hard link or whiteout), gzip-compressed, behind an ImageSource
 * that verifies what it hands out, like the real readers.
 */

export interface Member {
  readonly name: string;
  readonly type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  readonly content?: string | Buffer;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly linkname?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly mtime?: number;
}

export interface Step {
  readonly createdBy: string;
  /** Omitted: an empty layer (a metadata-only step). */
  readonly members?: readonly Member[];
  /** The layer's uncompressed bytes as given (for bad-input tests); replaces `members`. */
  readonly rawTar?: Buffer;
}

export async function tarOfMembers(members: readonly Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const member of members) {
    const type = member.type ?? 'file';
    const header = {
      name: member.name,
      type,
      mode: member.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: member.uid ?? 0,
      gid: member.gid ?? 0,
      mtime: new Date((member.mtime ?? 1_700_000_000) * 1000),
      ...(member.linkname !== undefined ? { linkname: member.linkname } : {}),
      ...(member.devmajor !== undefined ? { devmajor: member.devmajor } : {}),
      ...(member.devminor !== undefined ? { devminor: member.devminor } : {}),
    };
    if (type === 'file') pack.entry(header, member.content ?? '');
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface BuiltImage {
  readonly source: ImageSource;
  readonly blobs: Map<Digest, Buffer>;
}

export interface ImageOptions {
  readonly config?: ContainerConfig;
  readonly name?: string;
  /** Override the history written into the config (for bad-input tests). */
  readonly history?: readonly History[] | null;
}

export async function buildImage(steps: readonly Step[], options: ImageOptions = {}): Promise<BuiltImage> {
  const blobs = new Map<Digest, Buffer>();
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (const step of steps) {
    if (step.members === undefined && step.rawTar === undefined) continue;
    const tarBytes = step.rawTar ?? (await tarOfMembers(step.members ?? []));
    const blob = gzipSync(tarBytes);
    const digest = sha256Digest(blob);
    blobs.set(digest, blob);
    layers.push({ mediaType: MediaType.ociLayerGzip, digest, size: blob.length });
    diffIds.push(sha256Digest(tarBytes));
  }
  const history: History[] = steps.map((step) => ({
    created: '2024-01-02T03:04:05Z',
    created_by: step.createdBy,
    ...(step.members === undefined && step.rawTar === undefined ? { empty_layer: true } : {}),
  }));
  const config: ImageConfig = {
    created: '2024-01-02T03:04:05Z',
    architecture: 'amd64',
    os: 'linux',
    config: options.config ?? { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    ...(options.history === null ? {} : { history: options.history ?? history }),
  };
  const rawConfig = toRaw(config, configShape);
  blobs.set(rawConfig.digest, rawConfig.raw);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: rawConfig.digest, size: rawConfig.raw.length },
    layers,
  };
  const rawManifest = toRaw(manifest, manifestShape);
  const source: ImageSource = {
    name: options.name ?? 'memory:test',
    descriptor: {
      mediaType: MediaType.ociManifest,
      digest: rawManifest.digest,
      size: rawManifest.raw.length,
    },
    manifest: rawManifest,
    config: rawConfig,
    openBlob(descriptor) {
      const bytes = blobs.get(descriptor.digest);
      if (bytes === undefined) return Promise.reject(new Error(`memory: no blob ${descriptor.digest}`));
      const verifier = new VerifyingStream(descriptor.digest, descriptor.size, 'memory');
      return Promise.resolve(Readable.from([bytes]).pipe(verifier));
    },
    close: () => Promise.resolve(),
  };
  return { source, blobs };
}

/** A small base layer most tests start from. */
export const BASE: Step = {
  createdBy: 'base',
  members: [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/sh', content: '#!shell\n', mode: 0o755 },
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
    { name: 'tmp/', type: 'directory', mode: 0o1777 },
  ],
};
