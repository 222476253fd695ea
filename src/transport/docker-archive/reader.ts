import { describeSource, openArchive, withArchive } from '../archive-file.js';
import { createHash } from 'node:crypto';
import { StratumError } from '../../errors.js';
import { isDigest } from '../../oci/digest.js';
import { readHead, type FileAccess } from '../files.js';
import type { ImageSource, ReadImageOptions } from '../../oci/image.js';
import { ociLayerMediaType, sniffCompression } from '../../oci/compression.js';
import { parseConfig, parseJson } from '../../oci/parse.js';
import { normalizeImageName } from '../../oci/reference.js';
import { manifestShape, toRaw } from '../../oci/json.js';
import { MediaType, type Descriptor, type Digest, type ImageManifest, type Raw } from '../../oci/types.js';
import { verifiedStream } from '../../oci/verified.js';

/**
 * Reads what `docker save` writes: `manifest.json`, a list of
 * `{ Config, RepoTags, Layers }` naming files in the archive. Docker up to 24 writes
 * `<id>/layer.tar` (uncompressed) and `<hex>.json`; Docker 25+ writes `blobs/sha256/<hex>`.
 *
 * A docker archive has no image manifest, so one is synthesised (OCI media types; canonical
 * JSON, so the same archive always gives the same manifest digest): the config descriptor is
 * the config file's digest and size; each layer descriptor is the layer file's own digest and
 * size, with `tar` or `tar+gzip` by its magic bytes. An uncompressed layer's digest is its
 * diff_id, so it is checked when read rather than hashed up front; a compressed layer outside
 * `blobs/` is hashed once here. Pre-1.10 archives (no manifest.json) are not supported.
 */

interface ArchiveEntry {
  readonly Config: string;
  readonly RepoTags: readonly string[] | null;
  readonly Layers: readonly string[];
}

function parseArchiveManifest(bytes: Buffer, what: string): readonly ArchiveEntry[] {
  const value = parseJson(bytes, what);
  const fail = (detail: string): never => {
    throw new StratumError('INVALID_IMAGE', `${what}: ${detail}`);
  };
  if (!Array.isArray(value)) fail('expected a JSON array');
  return (value as unknown[]).map((entry, index) => {
    if (typeof entry !== 'object' || entry === null) return fail(`[${index}]: expected an object`);
    const record = entry as Record<string, unknown>;
    if (typeof record['Config'] !== 'string') fail(`[${index}].Config: missing`);
    const layers = record['Layers'];
    if (!Array.isArray(layers) || !layers.every((layer) => typeof layer === 'string'))
      fail(`[${index}].Layers: expected file names`);
    const tags = record['RepoTags'];
    if (
      tags !== null &&
      tags !== undefined &&
      (!Array.isArray(tags) || !tags.every((tag) => typeof tag === 'string'))
    ) {
      fail(`[${index}].RepoTags: expected names`);
    }
    return record as unknown as ArchiveEntry;
  });
}

/** `docker.io/library/x:1` and `x:1` are one name to Docker; compare without those prefixes. */
function familiar(name: string): string {
  return normalizeImageName(name)
    .replace(/^docker\.io\//, '')
    .replace(/^library\//, '');
}

function chooseEntry(entries: readonly ArchiveEntry[], tag: string | undefined, name: string): ArchiveEntry {
  const tagsOf = (): string => {
    const all = entries.flatMap((entry) => entry.RepoTags ?? []);
    return all.length === 0 ? 'it has no tags' : `tags: ${all.join(', ')}`;
  };
  if (tag === undefined) {
    if (entries.length === 1) return entries[0]!;
    if (entries.length === 0) throw new StratumError('NOT_FOUND', `${name}: manifest.json lists no images`);
    throw new StratumError(
      'USAGE',
      `${name}: the archive holds ${entries.length} images; name one with :NAME:TAG or :@N (${tagsOf()})`,
    );
  }
  if (/^@\d+$/.test(tag)) {
    const found = entries[Number(tag.slice(1))];
    if (found) return found;
    throw new StratumError('NOT_FOUND', `${name}: no image ${tag} (the archive holds ${entries.length})`);
  }
  const wanted = familiar(tag);
  const found = entries.find((entry) =>
    (entry.RepoTags ?? []).some((repoTag) => familiar(repoTag) === wanted),
  );
  if (found) return found;
  throw new StratumError('NOT_FOUND', `${name}: tag "${tag}" not found in manifest.json (${tagsOf()})`);
}

async function hashFile(access: FileAccess, path: string, signal?: AbortSignal): Promise<Digest> {
  const stream = await access.open(path, signal);
  if (stream === undefined) throw new StratumError('NOT_FOUND', `${access.where}: ${path} is missing`);
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * The manifest stratum gives a docker-archive image: OCI media types, the config file and the
 * layer files as they are in the archive. docker-archive-writer computes the same one, so the
 * digest it reports is the digest a reader of the archive sees.
 */
export function synthesizeManifest(
  config: { readonly digest: Digest; readonly size: number },
  layers: readonly Descriptor[],
): Raw<ImageManifest> {
  const value: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.size },
    layers,
  };
  return toRaw(value, manifestShape);
}

const BLOB_NAME = /^blobs\/sha256\/([a-f0-9]{64})$/;

export async function openDockerArchiveImage(
  access: FileAccess,
  name: string,
  tag: string | undefined,
  options: { readonly signal?: AbortSignal },
  close: () => Promise<void> = () => Promise.resolve(),
): Promise<ImageSource> {
  const manifestBytes = await access.readFile('manifest.json');
  if (manifestBytes === undefined) {
    const legacy = (await access.size('repositories')) !== undefined;
    throw new StratumError(
      legacy ? 'UNSUPPORTED' : 'NOT_FOUND',
      legacy
        ? `${name}: no manifest.json (a pre-Docker-1.10 archive), which stratum does not read`
        : `${name}: not a docker archive (no manifest.json in ${access.where})`,
    );
  }
  const entry = chooseEntry(parseArchiveManifest(manifestBytes, `${name}: manifest.json`), tag, name);
  const configBytes = await access.readFile(entry.Config);
  if (configBytes === undefined) {
    throw new StratumError('NOT_FOUND', `${name}: config ${entry.Config} named by manifest.json is missing`);
  }
  const config = parseConfig(configBytes, `${name}: config ${entry.Config}`);
  const diffIds = config.value.rootfs.diff_ids;
  if (diffIds.length !== entry.Layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${name}: manifest.json names ${entry.Layers.length} layers but config ${config.digest} has ${diffIds.length} diff_ids`,
    );
  }
  const layers: Descriptor[] = [];
  const paths = new Map<Digest, string>();
  for (const [index, path] of entry.Layers.entries()) {
    const size = await access.size(path);
    if (size === undefined) {
      throw new StratumError(
        'NOT_FOUND',
        `${name}: layer ${path} (diff_id ${diffIds[index]}) named by manifest.json is missing`,
      );
    }
    const compression = sniffCompression(await readHead(access, path, 4));
    const blobHex = BLOB_NAME.exec(path)?.[1];
    const digest: Digest =
      blobHex !== undefined
        ? `sha256:${blobHex}`
        : compression === 'none' && isDigest(diffIds[index]!)
          ? diffIds[index]
          : await hashFile(access, path, options.signal);
    layers.push({ mediaType: ociLayerMediaType(compression), digest, size });
    paths.set(digest, path);
  }
  paths.set(config.digest, entry.Config);
  const manifest = synthesizeManifest({ digest: config.digest, size: configBytes.length }, layers);
  return {
    name,
    descriptor: { mediaType: MediaType.ociManifest, digest: manifest.digest, size: manifest.raw.length },
    manifest,
    config,
    async openBlob(descriptor, signal) {
      const path = paths.get(descriptor.digest);
      const stream = path === undefined ? undefined : await access.open(path, signal);
      if (stream === undefined) {
        throw new StratumError('NOT_FOUND', `${name}: blob ${descriptor.digest} is not in the archive`);
      }
      return verifiedStream(stream, descriptor, `${name}: ${path}`, signal);
    },
    close,
  };
}

export async function openDockerArchive(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describeSource('docker-archive', path, tag);
  const archive = await openArchive(path, name, options.signal, options.tmpDir);
  return withArchive(archive, ({ access, close }) =>
    openDockerArchiveImage(access, name, tag, options, close),
  );
}
