import { homedir } from 'node:os';
import { join } from 'node:path';
import { StratumError } from '../../errors.js';
import { BlobStore } from '../../oci/blob-store.js';
import { directoryAccess } from '../files.js';
import type { AnyImage, ImageIndexSource, ImageSource, ReadImageOptions } from '../../oci/image.js';
import {
  imageFromManifest,
  indexFromEntry,
  layoutBlobs,
  readLayoutIndex,
  type LayoutBlobs,
  refName,
  resolveManifest,
} from '../layout/reader.js';
import { parseConfig, parseManifestOrIndex } from '../../oci/parse.js';
import { isValidImageName, normalizeImageName } from '../../oci/reference.js';
import type { Descriptor } from '../../oci/types.js';
import {
  copyAnyImage,
  manifestDescriptor,
  prepareLayout,
  updateLayoutIndex,
  updatedEntries,
  type WriteResult,
} from '../layout/writer.js';

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
  /**
   * Manifest + config + layers (compressed), in bytes; for a multi-platform image, its index
   * and every platform's, each blob once.
   */
  readonly size: number;
  /** The config's `created`; for a multi-platform image, the newest platform's. */
  readonly created?: string;
}

function isDescriptorLike(value: unknown): value is Descriptor {
  return typeof value === 'object' && value !== null && typeof (value as Descriptor).digest === 'string';
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
    // Leases beside the layout, not in it: the store stays a plain OCI layout.
    this.blobs = new BlobStore(this.root, join(dataDir, 'leases'));
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

  /**
   * An image's bytes (its manifest, config and layers; below an index, every platform's, a
   * blob platforms share counted once) and when it was made (the newest platform's `created`).
   */
  private async sizeAndCreated(
    blobs: LayoutBlobs,
    entry: Descriptor,
    name: string,
    signal: AbortSignal | undefined,
    counted: Set<string> = new Set(),
  ): Promise<{ size: number; created?: string }> {
    const count = (descriptor: Descriptor): number => {
      if (counted.has(descriptor.digest)) return 0;
      counted.add(descriptor.digest);
      return descriptor.size;
    };
    let size = count(entry);
    const raw = await blobs.readJson(entry, 'manifest', signal);
    const parsed = parseManifestOrIndex(raw, `store ${name}`, entry.digest);
    if (parsed.kind === 'index') {
      let created: string | undefined;
      for (const child of parsed.index.value.manifests) {
        const inner = await this.sizeAndCreated(blobs, child, name, signal, counted);
        size += inner.size;
        if (inner.created !== undefined && (created === undefined || inner.created > created))
          created = inner.created;
      }
      return created === undefined ? { size } : { size, created };
    }
    const manifest = parsed.manifest.value;
    size += count(manifest.config) + manifest.layers.reduce((sum, layer) => sum + count(layer), 0);
    const config = parseConfig(
      await blobs.readJson(manifest.config, 'config', signal),
      `store ${name}`,
      manifest.config.digest,
    );
    const created = config.value.created;
    return created === undefined ? { size } : { size, created };
  }

  /**
   * Every blob the store's images need: each index.json entry, and below an image index every
   * platform's manifest, config and layers (nested indexes too). A blob already missing is
   * skipped, so one damaged image does not stop a prune from protecting the others.
   */
  async referencedBlobs(): Promise<Set<string>> {
    const found = new Set<string>();
    for (const entry of await this.entries()) await this.collectBlobs(entry, found);
    return found;
  }

  /** `descriptor` and every blob below it, added to `found`. */
  async collectBlobs(descriptor: Descriptor, found: Set<string>): Promise<void> {
    if (found.has(descriptor.digest)) return;
    found.add(descriptor.digest);
    let document: { manifests?: unknown; config?: unknown; layers?: unknown };
    try {
      document = JSON.parse(
        (await this.blobs.readBytes(descriptor.digest)).toString('utf8'),
      ) as typeof document;
    } catch {
      return; // missing or not JSON: nothing below it to keep
    }
    const children = Array.isArray(document.manifests)
      ? (document.manifests as unknown[]).filter(isDescriptorLike)
      : [];
    for (const child of children) await this.collectBlobs(child, found);
    const leaves = [
      ...(isDescriptorLike(document.config) ? [document.config] : []),
      ...(Array.isArray(document.layers) ? (document.layers as unknown[]).filter(isDescriptorLike) : []),
    ];
    for (const leaf of leaves) found.add(leaf.digest);
  }

  async list(options: { readonly signal?: AbortSignal } = {}): Promise<StoredImage[]> {
    const blobs = layoutBlobs(directoryAccess(this.root), `store ${this.root}`);
    const images: StoredImage[] = [];
    for (const entry of await this.entries()) {
      const name = refName(entry);
      if (name === undefined) continue;
      const { size, created } = await this.sizeAndCreated(blobs, entry, name, options.signal);
      images.push(
        created === undefined
          ? { name, digest: entry.digest, size }
          : { name, digest: entry.digest, size, created },
      );
    }
    return images.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
