import { stat } from 'node:fs/promises';
import { StratumError } from './errors.js';
import type { ImageSource } from './oci/image.js';
import { parseImageReference } from './oci/reference.js';
import { checkDestination } from './oci-writer/destination.js';
import { ImageStore, defaultDataDir } from './oci-writer/store.js';
import { openImage, writeImage } from './images.js';
import { build, defaultCacheDir, type BuildOptions, type BuildResult } from './executor/build.js';
import { openRegistryImage, pushImage } from './push/index.js';
import { SharedCaches } from './executor/cache/registry-shared.js';
import { LayerCache } from './executor/cache/store.js';

/**
 * `stratum build` as a library call: wires the build engine to the image transports (FROM and
 * --from can name a layout, an archive, a local store image or a registry image) and writes
 * the result to each destination once the whole build has succeeded.
 */
export interface BuildImageOptions extends Omit<BuildOptions, 'resolveImage' | 'blobs'> {
  /** Names for the local image store (`-t`). */
  readonly tags?: readonly string[];
  /** Transport destinations (`--output oci:DIR:TAG`, ...). */
  readonly outputs?: readonly string[];
  readonly dataDir?: string;
  /** Registry hosts reached over plain HTTP. */
  readonly insecureRegistries?: readonly string[];
  /** Push the image to its registry under every `tags` name (`build --push -t host/repo:tag`). */
  readonly push?: boolean;
  /** `registry:HOST/REPO[:TAG]` caches to read after a local miss (`--cache-from`). */
  readonly cacheFrom?: readonly string[];
  /** `registry:HOST/REPO[:TAG]` caches that get every step's entry after success (`--cache-to`). */
  readonly cacheTo?: readonly string[];
}

export interface BuildImageResult extends BuildResult {
  readonly digest: string;
  readonly written: readonly string[];
}

export async function buildImage(options: BuildImageOptions): Promise<BuildImageResult> {
  const dataDir = options.dataDir ?? defaultDataDir();
  const store = new ImageStore(dataDir);
  // Usage errors and unwritable destinations fail before any work, with nothing written.
  for (const output of options.outputs ?? []) await checkDestination(parseImageReference(output));
  for (const tag of options.tags ?? []) parseImageReference(tag);
  await checkSecretFiles(options.secrets ?? {});
  if (options.push === true && (options.tags ?? []).length === 0) {
    throw new StratumError('USAGE', '--push needs at least one -t REGISTRY/REPOSITORY[:TAG]');
  }
  const warnings: string[] = [];
  const shared = await SharedCaches.open({
    cacheFrom: options.cacheFrom ?? [],
    cacheTo: options.cacheTo ?? [],
    insecureRegistries: options.insecureRegistries ?? [],
    ...(options.signal ? { signal: options.signal } : {}),
    onWarning: (message) => {
      warnings.push(message);
      options.onEvent?.({ kind: 'warning', message });
    },
  });
  try {
    // The default cache shares its blobs with the local image store, so bytes are stored once.
    const cacheDir = options.cacheDir ?? defaultCacheDir();
    const blobs = options.cacheDir === undefined ? store.blobs : new LayerCache(cacheDir).blobs;
    const result = await build({
      ...options,
      cacheDir,
      blobs,
      sharedCache: shared,
      resolveImage: (reference, signal) =>
        resolveBaseImage(reference, dataDir, options.insecureRegistries ?? [], signal),
    });
    const written = await writeResult(result.image, options, store, dataDir);
    if (shared.active) {
      // After the push, so layers already in the registry are mounted rather than uploaded again.
      await shared.export(blobs, options.signal ? { signal: options.signal } : {});
    }
    return {
      ...result,
      warnings: [...result.warnings, ...warnings],
      digest: result.image.descriptor.digest,
      written,
    };
  } finally {
    await shared.close();
  }
}

/** A secret file that is missing fails the build before any step runs (as buildx does). */
async function checkSecretFiles(secrets: Readonly<Record<string, string>>): Promise<void> {
  for (const [id, path] of Object.entries(secrets)) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined || info.isDirectory()) {
      throw new StratumError(
        'NOT_FOUND',
        `--secret id=${id}: ${path} ${info === undefined ? 'does not exist or cannot be read' : 'is a directory'}`,
      );
    }
  }
}

/** Stores, pushes and writes the built image to every destination; returns where it went. */
async function writeResult(
  image: ImageSource,
  options: BuildImageOptions,
  store: ImageStore,
  dataDir: string,
): Promise<string[]> {
  const written: string[] = [];
  const digest = image.descriptor.digest;
  const signalOption = options.signal ? { signal: options.signal } : {};
  if ((options.tags ?? []).length > 0) {
    await store.put(image, options.tags ?? [], signalOption);
    written.push(...(options.tags ?? []));
  }
  if (options.push === true) {
    for (const tag of options.tags ?? []) {
      const pushed = await pushImage(image, tag, {
        insecureRegistries: options.insecureRegistries ?? [],
        ...signalOption,
      });
      written.push(...pushed.references.map((reference) => `docker://${reference}`));
      options.onEvent?.({
        kind: 'image',
        digest: pushed.digest,
        destination: `docker://${pushed.references[0] ?? tag}`,
      });
    }
  }
  for (const output of options.outputs ?? []) {
    await writeImage(image, output, {
      dataDir,
      insecureRegistries: options.insecureRegistries ?? [],
      ...signalOption,
    });
    written.push(output);
    options.onEvent?.({ kind: 'image', digest, destination: output });
  }
  for (const tag of options.tags ?? []) options.onEvent?.({ kind: 'image', digest, destination: tag });
  return written;
}

/**
 * FROM and --from: a transport reference opens that image; a plain name is looked up in the
 * local store first and then pulled (lazily, blob by blob) from its registry.
 */
export async function resolveBaseImage(
  reference: string,
  dataDir: string,
  insecureRegistries: readonly string[],
  signal?: AbortSignal,
): Promise<ImageSource> {
  const parsed = parseImageReference(reference);
  const signalOption = signal ? { signal } : {};
  if (parsed.transport === 'docker') {
    return openRegistryImage(parsed.reference, { insecureRegistries, ...signalOption });
  }
  if (parsed.transport !== 'store') return openImage(parsed, { dataDir, ...signalOption });
  try {
    return await new ImageStore(dataDir).open(parsed.name, signalOption);
  } catch (error) {
    if (!(error instanceof StratumError) || error.code !== 'NOT_FOUND') throw error;
    return openRegistryImage(parsed.name, { insecureRegistries, ...signalOption });
  }
}
