import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { StratumError, errnoCode } from '../errors.js';
import { directoryAccess } from '../transport/files.js';
import { layoutBlobs, readLayoutIndex, refName } from '../transport/layout/reader.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/media-types.js';
import { parseManifestOrIndex } from '../oci/parse.js';
import type { Descriptor } from '../oci/types.js';

/**
 * Disk usage of an OCI image layout (stratum's local store is one): each image's size as people
 * add it up (its manifest, config and layers), and what the layout really holds on disk, where a
 * blob that ten images share is stored once.
 */

export interface ImageUsage {
  /** The tag (ref.name annotation), or the manifest digest for an untagged entry. */
  readonly name: string;
  readonly digest: string;
  /** Manifest(s), config(s) and layers of this image, summed. */
  readonly size: number;
  /** Bytes of the blobs no other image in the layout uses. */
  readonly unique: number;
  /** Bytes of the blobs at least one other image uses too. */
  readonly shared: number;
  readonly layers: number;
}

export interface DiskUsage {
  readonly location: string;
  readonly images: readonly ImageUsage[];
  /** The sum of every image's size: what `docker images` makes people believe. */
  readonly summedSize: number;
  /** The distinct blobs the images use, each counted once. */
  readonly referencedSize: number;
  readonly referencedBlobs: number;
  /** Every blob file in the layout, referenced or not (the layer cache keeps blobs here too). */
  readonly onDiskSize: number;
  readonly onDiskBlobs: number;
}

interface Reached {
  readonly blobs: Map<string, number>;
  layers: number;
}

export async function diskUsage(
  layout: string,
  options: {
    readonly name?: string;
    /** A layout that does not exist yet (an empty store) counts as empty instead of an error. */
    readonly missingOk?: boolean;
    readonly signal?: AbortSignal;
  } = {},
): Promise<DiskUsage> {
  const name = options.name ?? `oci:${layout}`;
  const access = directoryAccess(layout);
  if (options.missingOk === true && (await access.readFile('oci-layout')) === undefined) {
    // No image stored yet; the layer cache may still have put blobs there.
    const onDisk = await blobFiles(layout, name);
    return {
      location: name,
      images: [],
      summedSize: 0,
      referencedSize: 0,
      referencedBlobs: 0,
      onDiskSize: onDisk.size,
      onDiskBlobs: onDisk.count,
    };
  }
  const index = await readLayoutIndex(access, name);
  const blobs = layoutBlobs(access, name);

  const visit = async (descriptor: Descriptor, reached: Reached, depth: number): Promise<void> => {
    if (reached.blobs.has(descriptor.digest)) return;
    reached.blobs.set(descriptor.digest, descriptor.size);
    const json =
      isIndexMediaType(descriptor.mediaType) ||
      isManifestMediaType(descriptor.mediaType) ||
      descriptor.mediaType === 'application/vnd.oci.descriptor.v1+json';
    if (!json || depth > 8) return;
    const raw = await blobs.readJson(descriptor, 'manifest', options.signal);
    const parsed = parseManifestOrIndex(raw, `${name}: manifest ${descriptor.digest}`, descriptor.digest);
    if (parsed.kind === 'index') {
      for (const child of parsed.index.value.manifests) await visit(child, reached, depth + 1);
      return;
    }
    const manifest = parsed.manifest.value;
    reached.blobs.set(manifest.config.digest, manifest.config.size);
    for (const layer of manifest.layers) {
      reached.blobs.set(layer.digest, layer.size);
      reached.layers++;
    }
  };

  const perImage: { name: string; digest: string; reached: Reached }[] = [];
  for (const entry of index.value.manifests) {
    const reached: Reached = { blobs: new Map(), layers: 0 };
    await visit(entry, reached, 0);
    perImage.push({ name: refName(entry) ?? entry.digest, digest: entry.digest, reached });
  }
  const users = new Map<string, number>();
  const sizes = new Map<string, number>();
  for (const image of perImage) {
    for (const [digest, size] of image.reached.blobs) {
      users.set(digest, (users.get(digest) ?? 0) + 1);
      sizes.set(digest, size);
    }
  }
  const images: ImageUsage[] = perImage.map((image) => {
    let size = 0;
    let unique = 0;
    for (const [digest, bytes] of image.reached.blobs) {
      size += bytes;
      if (users.get(digest) === 1) unique += bytes;
    }
    return {
      name: image.name,
      digest: image.digest,
      size,
      unique,
      shared: size - unique,
      layers: image.reached.layers,
    };
  });
  images.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const onDisk = await blobFiles(layout, name);
  return {
    location: name,
    images,
    summedSize: images.reduce((total, image) => total + image.size, 0),
    referencedSize: [...sizes.values()].reduce((total, size) => total + size, 0),
    referencedBlobs: sizes.size,
    onDiskSize: onDisk.size,
    onDiskBlobs: onDisk.count,
  };
}

/** Sizes of the files under blobs/ALGORITHM/ (temporary upload files excluded). */
async function blobFiles(layout: string, name: string): Promise<{ size: number; count: number }> {
  let size = 0;
  let count = 0;
  const root = join(layout, 'blobs');
  let algorithms: string[];
  try {
    algorithms = await readdir(root);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { size, count };
    throw new StratumError('IO', `${name}: cannot list ${root}: ${errnoCode(error) ?? String(error)}`);
  }
  for (const algorithm of algorithms) {
    if (algorithm !== 'sha256' && algorithm !== 'sha512') continue;
    for (const file of await readdir(join(root, algorithm))) {
      if (!/^[a-f0-9]{64,128}$/.test(file)) continue;
      const info = await stat(join(root, algorithm, file));
      if (!info.isFile()) continue;
      size += info.size;
      count++;
    }
  }
  return { size, count };
}
