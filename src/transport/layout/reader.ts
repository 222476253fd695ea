import { describeSource, openArchive, requireExisting } from '../archive-file.js';
import { directoryAccess } from '../files.js';
import type { Readable } from 'node:stream';
import { StratumError } from '../../errors.js';
import { digestAlgorithm, digestHex, verifyBytes } from '../../oci/digest.js';
import { JSON_LIMIT, type FileAccess } from '../files.js';
import type { ImageIndexSource, ImageSource, ReadImageOptions } from '../../oci/image.js';
import { isIndexMediaType, isManifestMediaType } from '../../oci/media-types.js';
import { parseConfig, parseIndex, parseJson, parseManifest, parseManifestOrIndex } from '../../oci/parse.js';
import { formatPlatform, hostPlatform, selectPlatform } from '../../oci/platform.js';
import {
  MediaType,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Raw,
} from '../../oci/types.js';
import { verifiedStream } from '../../oci/verified.js';
import { layoutProblems } from '../../oci/validate.js';

/**
 * Reads an image from an OCI image layout (image-layout.md), in a directory or an archive.
 *
 * Choosing the image: with a tag, the `index.json` entry whose `org.opencontainers.image.ref.name`
 * equals it; without one, the only entry (several entries need a tag, as in skopeo). An entry
 * that is an index (multi-platform) is resolved to the manifest for the requested platform,
 * through nested indexes; an index whose only image entry carries no platform resolves to it.
 * Every blob read, manifests and configs included, is verified against its descriptor.
 */

export const REF_NAME = 'org.opencontainers.image.ref.name';

export function blobPath(descriptor: Descriptor): string {
  return `blobs/${digestAlgorithm(descriptor.digest)}/${digestHex(descriptor.digest)}`;
}

/** The index.json entry's tag, if any. */
export function refName(descriptor: Descriptor): string | undefined {
  return descriptor.annotations?.[REF_NAME];
}

export interface LayoutBlobs {
  /** Streams a blob, verified against `descriptor`; NOT_FOUND naming the digest when missing. */
  open(descriptor: Descriptor, what?: string, signal?: AbortSignal): Promise<Readable>;
  readJson(descriptor: Descriptor, what?: string, signal?: AbortSignal): Promise<Buffer>;
}

export function layoutBlobs(access: FileAccess, name: string): LayoutBlobs {
  const missing = (descriptor: Descriptor, what: string, path: string): StratumError =>
    new StratumError(
      'NOT_FOUND',
      `${name}: ${what} ${descriptor.digest} is missing (${access.where}/${path})`,
    );
  const open = async (descriptor: Descriptor, what = 'blob', signal?: AbortSignal): Promise<Readable> => {
    const path = blobPath(descriptor);
    const stream = await access.open(path, signal);
    if (stream === undefined) throw missing(descriptor, what, path);
    return verifiedStream(stream, descriptor, `${name}: ${what} ${access.where}/${path}`, signal);
  };
  return {
    open,
    async readJson(descriptor, what = 'blob', signal) {
      if (descriptor.size > JSON_LIMIT) {
        throw new StratumError(
          'INVALID_IMAGE',
          `${name}: ${what} ${descriptor.digest} is ${descriptor.size} bytes, too large for a JSON document`,
        );
      }
      // Read whole and checked as one Buffer: a stream through a verifier cost a dozen
      // thread-pool round trips and stream callbacks for a manifest or a config.
      signal?.throwIfAborted();
      const path = blobPath(descriptor);
      const bytes = await access.readFile(path, JSON_LIMIT);
      if (bytes === undefined) throw missing(descriptor, what, path);
      verifyBytes(bytes, descriptor.digest, descriptor.size, `${name}: ${what} ${access.where}/${path}`);
      return bytes;
    },
  };
}

/** Reads and checks `oci-layout` and `index.json`. */
export async function readLayoutIndex(access: FileAccess, name: string): Promise<Raw<ImageIndex>> {
  const layoutBytes = await access.readFile('oci-layout');
  if (layoutBytes === undefined) {
    throw new StratumError(
      'NOT_FOUND',
      `${name}: not an OCI image layout (no oci-layout file in ${access.where})`,
    );
  }
  const problems = layoutProblems(parseJson(layoutBytes, `${name}: oci-layout`));
  if (problems.length > 0) throw new StratumError('UNSUPPORTED', `${name}: oci-layout: ${problems[0]}`);
  const indexBytes = await access.readFile('index.json');
  if (indexBytes === undefined)
    throw new StratumError('NOT_FOUND', `${name}: no index.json in ${access.where}`);
  return parseIndex(indexBytes, `${name}: index.json`);
}

/** Picks the index.json entry for `tag` (or the only entry). */
export function chooseEntry(index: ImageIndex, tag: string | undefined, name: string): Descriptor {
  if (tag !== undefined) {
    const found = index.manifests.find((entry) => refName(entry) === tag);
    if (found) return found;
    throw new StratumError(
      'NOT_FOUND',
      `${name}: tag "${tag}" not found in index.json (${describeTags(index)})`,
    );
  }
  const [only, ...others] = index.manifests;
  if (only === undefined) throw new StratumError('NOT_FOUND', `${name}: index.json lists no images`);
  if (others.length > 0) {
    throw new StratumError(
      'USAGE',
      `${name}: the layout holds ${index.manifests.length} images; name one with :TAG (${describeTags(index)})`,
    );
  }
  return only;
}

function describeTags(index: ImageIndex): string {
  const tags = index.manifests.map(refName).filter((tag): tag is string => tag !== undefined);
  return tags.length === 0 ? 'it has no tags' : `tags: ${tags.join(', ')}`;
}

function platformsOf(index: ImageIndex): string {
  const list = index.manifests.flatMap((entry) => (entry.platform ? [formatPlatform(entry.platform)] : []));
  return list.length === 0 ? 'none with a platform' : list.join(', ');
}

export interface ResolvedManifest {
  readonly descriptor: Descriptor;
  readonly manifest: Raw<ImageManifest>;
  /** The index the manifest was chosen from (the innermost one), if any. */
  readonly chosenFrom?: ImageSource['chosenFrom'];
}

/**
 * Follows a descriptor through indexes down to one image manifest for the platform.
 * Media types decide where they are known; an unknown one (e.g. `application/vnd.oci.descriptor.v1+json`
 * written by some tools) is decided by the document's content.
 */
export async function resolveManifest(
  blobs: LayoutBlobs,
  descriptor: Descriptor,
  name: string,
  options: ReadImageOptions,
): Promise<ResolvedManifest> {
  const wanted = options.platform ?? hostPlatform();
  let current = descriptor;
  let chosenFrom: ImageSource['chosenFrom'];
  for (let depth = 0; depth < 8; depth++) {
    const isIndex = isIndexMediaType(current.mediaType);
    const bytes = await blobs.readJson(current, isIndex ? 'index' : 'manifest', options.signal);
    const what = `${name}: ${isIndex ? 'index' : 'manifest'} ${current.digest}`;
    const parsed =
      isIndex || !isManifestMediaType(current.mediaType)
        ? parseManifestOrIndex(bytes, what, current.digest)
        : { kind: 'manifest' as const, manifest: parseManifest(bytes, what, current.digest) };
    if (parsed.kind === 'manifest')
      return { descriptor: current, manifest: parsed.manifest, ...(chosenFrom ? { chosenFrom } : {}) };
    const index = parsed.index.value;
    const images = index.manifests.filter(
      (entry) => isIndexMediaType(entry.mediaType) || isManifestMediaType(entry.mediaType),
    );
    const chosen =
      selectPlatform(images, wanted) ??
      (images.length === 1 && images[0]!.platform === undefined ? images[0] : undefined);
    if (chosen === undefined) {
      throw new StratumError(
        'NOT_FOUND',
        `${name}: index ${current.digest} has no image for ${formatPlatform(wanted)} (platforms: ${platformsOf(index)})`,
      );
    }
    chosenFrom = {
      digest: current.digest,
      platforms: index.manifests.flatMap((entry) => (entry.platform ? [entry.platform] : [])),
    };
    current = chosen;
  }
  throw new StratumError('INVALID_IMAGE', `${name}: indexes nested more than 8 deep at ${current.digest}`);
}

/** Builds the ImageSource for a resolved manifest: reads and verifies its config. */
export async function imageFromManifest(
  blobs: LayoutBlobs,
  resolved: ResolvedManifest,
  name: string,
  close: () => Promise<void>,
  signal?: AbortSignal,
): Promise<ImageSource> {
  const { manifest, descriptor } = resolved;
  const configDescriptor = manifest.value.config;
  if (
    configDescriptor.mediaType !== MediaType.ociConfig &&
    configDescriptor.mediaType !== MediaType.dockerConfig
  ) {
    throw new StratumError(
      'UNSUPPORTED',
      `${name}: manifest ${descriptor.digest} is not a container image (its config is ${configDescriptor.mediaType})`,
    );
  }
  const configBytes = await blobs.readJson(configDescriptor, 'config', signal);
  const config = parseConfig(
    configBytes,
    `${name}: config ${configDescriptor.digest}`,
    configDescriptor.digest,
  );
  return {
    name,
    descriptor,
    manifest,
    config,
    openBlob: (blob, blobSignal) => blobs.open(blob, 'blob', blobSignal),
    close,
    ...(resolved.chosenFrom === undefined ? {} : { chosenFrom: resolved.chosenFrom }),
  };
}

/** Opens the image `tag` (or the only image) of the layout behind `access`. */
export async function openLayoutImage(
  access: FileAccess,
  name: string,
  tag: string | undefined,
  options: ReadImageOptions,
  close: () => Promise<void> = () => Promise.resolve(),
): Promise<ImageSource> {
  const index = await readLayoutIndex(access, name);
  const entry = chooseEntry(index.value, tag, name);
  const blobs = layoutBlobs(access, name);
  const resolved = await resolveManifest(blobs, entry, name, options);
  return imageFromManifest(blobs, resolved, name, close, options.signal);
}

/**
 * Walks everything a layout's index.json reaches (indexes, manifests, configs, layers) and
 * streams every blob through its digest check, as `oci-image-tool validate` does. Returns how
 * many distinct blobs and bytes were verified; the first missing or mismatching blob throws.
 */
export async function verifyLayout(
  access: FileAccess,
  name: string,
  signal?: AbortSignal,
): Promise<{ readonly blobs: number; readonly bytes: number }> {
  const index = await readLayoutIndex(access, name);
  const blobs = layoutBlobs(access, name);
  const seen = new Set<string>();
  let bytes = 0;
  const visit = async (descriptor: Descriptor): Promise<void> => {
    if (seen.has(descriptor.digest)) return;
    seen.add(descriptor.digest);
    const maybeJson =
      isIndexMediaType(descriptor.mediaType) ||
      isManifestMediaType(descriptor.mediaType) ||
      descriptor.mediaType === 'application/vnd.oci.descriptor.v1+json';
    if (!maybeJson) {
      for await (const chunk of await blobs.open(descriptor, 'blob', signal))
        bytes += (chunk as Buffer).length;
      return;
    }
    const raw = await blobs.readJson(descriptor, 'manifest', signal);
    bytes += raw.length;
    const parsed = parseManifestOrIndex(raw, `${name}: manifest ${descriptor.digest}`, descriptor.digest);
    const children =
      parsed.kind === 'index'
        ? parsed.index.value.manifests
        : [parsed.manifest.value.config, ...parsed.manifest.value.layers];
    for (const child of children) await visit(child);
  };
  for (const entry of index.value.manifests) await visit(entry);
  return { blobs: seen.size, bytes };
}

/**
 * Opens the layout entry `tag` (or the only entry) as a whole multi-platform image when it is an
 * image index: every entry with a platform, each resolved to its image. Undefined when the entry
 * is a single image (open it with openLayoutImage).
 */
export async function openLayoutIndex(
  access: FileAccess,
  name: string,
  tag: string | undefined,
  options: ReadImageOptions,
  close: () => Promise<void> = () => Promise.resolve(),
): Promise<ImageIndexSource | undefined> {
  const top = await readLayoutIndex(access, name);
  return indexFromEntry(layoutBlobs(access, name), chooseEntry(top.value, tag, name), name, options, close);
}

/** The ImageIndexSource for an index.json entry that is an image index; undefined for a single image. */
export async function indexFromEntry(
  blobs: LayoutBlobs,
  entry: Descriptor,
  name: string,
  options: ReadImageOptions,
  close: () => Promise<void>,
): Promise<ImageIndexSource | undefined> {
  if (!isIndexMediaType(entry.mediaType)) return undefined;
  const bytes = await blobs.readJson(entry, 'index', options.signal);
  const index = parseIndex(bytes, `${name}: index ${entry.digest}`, entry.digest);
  // Every entry is copied with the index, so each must be an image stratum can read.
  const images: ImageSource[] = [];
  for (const child of index.value.manifests) {
    if (child.platform === undefined || !isManifestMediaType(child.mediaType)) {
      throw new StratumError(
        'UNSUPPORTED',
        `${name}: index ${entry.digest} entry ${child.digest} is not a single-platform image (${child.mediaType}); copy one platform with --platform instead`,
      );
    }
    const resolved = await resolveManifest(blobs, child, name, { ...options, platform: child.platform });
    images.push(await imageFromManifest(blobs, resolved, name, () => Promise.resolve(), options.signal));
  }
  return {
    name,
    descriptor: { mediaType: entry.mediaType, digest: entry.digest, size: entry.size },
    index,
    images,
    close,
  };
}

export async function openOciLayout(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageSource> {
  const name = describeSource('oci', path, tag);
  await requireExisting(path, 'directory', name);
  return openLayoutImage(directoryAccess(path), name, tag, options);
}

/** The layout entry as a whole multi-platform image, or undefined when it is a single image. */
export async function openOciLayoutIndex(
  path: string,
  tag: string | undefined,
  options: ReadImageOptions = {},
): Promise<ImageIndexSource | undefined> {
  const name = describeSource('oci', path, tag);
  await requireExisting(path, 'directory', name);
  return openLayoutIndex(directoryAccess(path), name, tag, options);
}

/** Verifies every blob an OCI layout (directory or archive) reaches; see layout-reader verifyLayout. */
export async function verifyOciLayout(
  path: string,
  options: { readonly archive?: boolean; readonly signal?: AbortSignal; readonly tmpDir?: string } = {},
): Promise<{ readonly blobs: number; readonly bytes: number }> {
  if (options.archive === true) {
    const name = `oci-archive:${path}`;
    const archive = await openArchive(path, name, options.signal, options.tmpDir);
    try {
      return await verifyLayout(archive.access, name, options.signal);
    } finally {
      await archive.close();
    }
  }
  const name = `oci:${path}`;
  await requireExisting(path, 'directory', name);
  return verifyLayout(directoryAccess(path), name, options.signal);
}
