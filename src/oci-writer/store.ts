import { homedir } from 'node:os';
import { join } from 'node:path';
import { StratumError } from '../errors.js';
import { BlobStore } from '../oci/blob-store.js';
import { directoryAccess } from '../oci/files.js';
import type { AnyImage, ImageIndexSource, ImageSource, ReadImageOptions } from '../oci/image.js';
import {
  imageFromManifest,
  indexFromEntry,
  layoutBlobs,
  readLayoutIndex,
  refName,
  resolveManifest,
} from '../oci/layout-reader.js';
import { parseConfig, parseManifestOrIndex } from '../oci/parse.js';
import { isValidImageName, normalizeImageName } from '../oci/reference.js';
import type { Descriptor } from '../oci/types.js';
import {
  copyAnyImage,
  manifestDescriptor,
  prepareLayout,
  updateLayoutIndex,
  updatedEntries,
  type WriteResult,
} from './layout-writer.js';

/**
 * stratum's local image store: one OCI image layout at `<data dir>/images`, where each image
 * name is an index.json entry whose `org.opencontainers.image.ref.name` is the full normalised
 * name (`app` → `app:latest`, `registry:5000/team/app:1.0` kept whole). Its BlobStore is the
 * one content-addressed store of the machine; the layer cache puts its blobs there too, so
 * built layers and stored images share bytes.
 *
 * The data dir is `$STRATUM_DATA_DIR`, else `$XDG_DATA_HOME/stratum`, else `~/.local/share/stratum`.
 */

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['STRATUM_DATA_DIR']) return env['STRATUM_DATA_DIR'];
  if (env['XDG_DATA_HOME']) return join(env['XDG_DATA_HOME'], 'stratum');
  return join(homedir(), '.local', 'share', 'stratum');
}

export interface StoredImage {
  readonly name: string;
  readonly digest: string;
  /** Manifest + config + layers (compressed), in bytes. */
  readonly size: number;
  readonly created?: string;
}

function checkedName(name: string): string {
  if (!isValidImageName(name)) throw new StratumError('USAGE', `invalid image name "${name}"`);
  return normalizeImageName(name);
}

export class ImageStore {
  readonly root: string;
  readonly blobs: BlobStore;

  constructor(dataDir: string = defaultDataDir()) {
    this.root = join(dataDir, 'images');
    this.blobs = new BlobStore(this.root);
  }

  private async entries(): Promise<readonly Descriptor[]> {
    try {
      return (await readLayoutIndex(directoryAccess(this.root), `store ${this.root}`)).value.manifests;
    } catch (error) {
      if (error instanceof StratumError && error.code === 'NOT_FOUND') return [];
      throw error;
    }
  }

  /** Copies an image in (blobs verified) and points each of `names` at it. */
  async put(
    source: AnyImage,
    names: readonly string[],
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<WriteResult> {
    const refs = names.map(checkedName);
    await prepareLayout(this.root);
    await copyAnyImage(source, this.blobs, options);
    const descriptor = manifestDescriptor(source);
    await updateLayoutIndex(
      this.root,
      (existing) => updatedEntries(existing, descriptor, refs),
      options.signal,
    );
    return { digest: descriptor.digest, descriptor };
  }

  /** The index entry for `name`, or undefined. */
  async resolve(name: string): Promise<Descriptor | undefined> {
    const wanted = checkedName(name);
    return (await this.entries()).find((entry) => refName(entry) === wanted);
  }

  async open(name: string, options: ReadImageOptions = {}): Promise<ImageSource> {
    const entry = await this.resolve(name);
    const label = normalizeImageName(name);
    if (entry === undefined)
      throw new StratumError('NOT_FOUND', `image "${label}" is not in the local store (${this.root})`);
    const blobs = layoutBlobs(directoryAccess(this.root), label);
    const resolved = await resolveManifest(blobs, entry, label, options);
    return imageFromManifest(blobs, resolved, label, () => Promise.resolve(), options.signal);
  }

  /** The image `name` as a whole multi-platform image, or undefined when it is a single image. */
  async openIndex(name: string, options: ReadImageOptions = {}): Promise<ImageIndexSource | undefined> {
    const entry = await this.resolve(name);
    const label = normalizeImageName(name);
    if (entry === undefined)
      throw new StratumError('NOT_FOUND', `image "${label}" is not in the local store (${this.root})`);
    const blobs = layoutBlobs(directoryAccess(this.root), label);
    return indexFromEntry(blobs, entry, label, options, () => Promise.resolve());
  }

  /** Removes a name (not the blobs, which other names or the cache may share). */
  async untag(name: string, options: { readonly signal?: AbortSignal } = {}): Promise<boolean> {
    const wanted = checkedName(name);
    let removed = false;
    await updateLayoutIndex(
      this.root,
      (existing) =>
        existing.filter((entry) => {
          const match = refName(entry) === wanted;
          removed ||= match;
          return !match;
        }),
      options.signal,
    );
    return removed;
  }

  async list(options: { readonly signal?: AbortSignal } = {}): Promise<StoredImage[]> {
    const blobs = layoutBlobs(directoryAccess(this.root), `store ${this.root}`);
    const images: StoredImage[] = [];
    for (const entry of await this.entries()) {
      const name = refName(entry);
      if (name === undefined) continue;
      const raw = await blobs.readJson(entry, 'manifest', options.signal);
      const parsed = parseManifestOrIndex(raw, `store ${name}`, entry.digest);
      let size = entry.size;
      let created: string | undefined;
      if (parsed.kind === 'manifest') {
        const manifest = parsed.manifest.value;
        size += manifest.config.size + manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
        const config = parseConfig(
          await blobs.readJson(manifest.config, 'config', options.signal),
          `store ${name}`,
          manifest.config.digest,
        );
        created = config.value.created;
      }
      images.push(
        created === undefined
          ? { name, digest: entry.digest, size }
          : { name, digest: entry.digest, size, created },
      );
    }
    return images.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
