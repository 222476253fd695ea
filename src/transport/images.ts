import { resolve } from 'node:path';
import { StratumError, destinationError } from '../errors.js';
import {
  isImageIndex,
  type AnyImage,
  type ImageReference,
  type ImageSource,
  type ReadImageOptions,
} from '../oci/image.js';
import { openDockerArchive } from './docker-archive/reader.js';
import { openFromDaemon } from './docker-daemon/reader.js';
import { openOciLayout, openOciLayoutIndex } from './layout/reader.js';
import { openOciArchive, openOciArchiveIndex } from './oci-archive/reader.js';
import { formatImageReference, parseImageReference } from '../oci/reference.js';
import { writeDockerArchive } from './docker-archive/writer.js';
import { loadIntoDockerDaemon } from './docker-daemon/writer.js';
import { writeOciLayout, type WriteResult } from './layout/writer.js';
import { writeOciArchive } from './oci-archive/writer.js';
import { ImageStore } from './store/store.js';
import { formatPlatform } from '../oci/platform.js';
import { planOutput } from '../util/output-path.js';
import { openRegistryImage, pushImage, pushIndex } from '../registry/index.js';

/**
 * One entry point per direction over every transport: `openImage` reads, `writeImage` writes.
 * Each transport is one `case`; the registry (`docker://`) is the registry folder's client.
 */

export interface ImageOptions {
  /** The local store's data dir (default: see defaultDataDir). */
  readonly dataDir?: string;
  /** Registry hosts reached over plain HTTP (loopback always is). */
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
  /** Where docker-daemon: archives are staged; default `$STRATUM_TMPDIR` or the cache's tmp/ (oci/temp-dir.ts). */
  readonly tmpDir?: string;
}

export type OpenImageOptions = ReadImageOptions & ImageOptions;

function toReference(ref: ImageReference | string): ImageReference {
  return typeof ref === 'string' ? parseImageReference(ref) : ref;
}

function registryOptions(options: ImageOptions): {
  insecureRegistries?: readonly string[];
  signal?: AbortSignal;
} {
  return {
    ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
}

export async function openImage(
  ref: ImageReference | string,
  options: OpenImageOptions = {},
): Promise<ImageSource> {
  const reference = toReference(ref);
  switch (reference.transport) {
    case 'oci':
      return openOciLayout(reference.path, reference.tag, options);
    case 'oci-archive':
      return openOciArchive(reference.path, reference.tag, options);
    case 'docker-archive':
      return openDockerArchive(reference.path, reference.tag, options);
    case 'store':
      return new ImageStore(options.dataDir).open(reference.name, options);
    case 'docker-daemon':
      return openFromDaemon(reference.name, options);
    case 'docker':
      return openRegistryImage(reference.reference, {
        ...registryOptions(options),
        ...(options.platform ? { platform: options.platform } : {}),
      });
  }
}

/**
 * Opens every platform of a multi-platform image (skopeo's `--all`): an image index from an OCI
 * layout, an oci-archive or the store comes whole; anything else (a single image, another
 * transport) is opened as openImage does.
 */
export async function openAllPlatforms(
  ref: ImageReference | string,
  options: OpenImageOptions = {},
): Promise<AnyImage> {
  const reference = toReference(ref);
  let index: AnyImage | undefined;
  switch (reference.transport) {
    case 'oci':
      index = await openOciLayoutIndex(reference.path, reference.tag, options);
      break;
    case 'oci-archive':
      index = await openOciArchiveIndex(reference.path, reference.tag, options);
      break;
    case 'store':
      index = await new ImageStore(options.dataDir).openIndex(reference.name, options);
      break;
    case 'docker-archive': // one image per archive
    case 'docker-daemon':
    case 'docker': // a registry index is read one platform at a time (skopeo copy --all does the whole)
      break;
  }
  return index ?? openImage(reference, options);
}

export async function writeImage(
  source: AnyImage,
  dest: ImageReference | string,
  options: ImageOptions = {},
): Promise<WriteResult> {
  const reference = toReference(dest);
  try {
    return await writeTo(source, reference, options);
  } catch (error) {
    // A full disk names no path: name the destination.
    throw destinationError(formatImageReference(reference), error);
  }
}

async function writeTo(
  source: AnyImage,
  reference: ImageReference,
  options: ImageOptions,
): Promise<WriteResult> {
  const writeOptions = options.signal ? { signal: options.signal } : {};
  // An archive bound for a FIFO or device is assembled under tmpDir first (oci/atomic-file.ts).
  const archiveOptions = {
    ...writeOptions,
    ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }),
  };
  switch (reference.transport) {
    case 'oci':
      // A symlink or a non-directory there is refused (oci/output-path.ts); the store's own
      // layout is not user-named and is written without this.
      await planOutput(resolve(reference.path), 'directory', formatImageReference(reference));
      return writeOciLayout(
        source,
        reference.path,
        reference.tag === undefined ? [] : [reference.tag],
        writeOptions,
      );
    case 'oci-archive':
      return writeOciArchive(source, reference.path, reference.tag, archiveOptions);
    case 'docker-archive':
      if (isImageIndex(source)) throw singlePlatformOnly(formatImageReference(reference), source.images);
      return writeDockerArchive(source, reference.path, reference.tag, archiveOptions);
    case 'store':
      return new ImageStore(options.dataDir).put(source, [reference.name], writeOptions);
    case 'docker-daemon':
      if (isImageIndex(source)) throw singlePlatformOnly(formatImageReference(reference), source.images);
      return loadIntoDockerDaemon(source, [reference.name], {
        ...writeOptions,
        ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }),
      });
    case 'docker': {
      if (isImageIndex(source)) {
        const pushed = await pushIndex(source, reference.reference, registryOptions(options));
        return { digest: pushed.digest, descriptor: { ...source.descriptor, digest: pushed.digest } };
      }
      const pushed = await pushImage(source, reference.reference, registryOptions(options));
      return {
        digest: pushed.digest,
        descriptor: { mediaType: pushed.mediaType, digest: pushed.digest, size: source.manifest.raw.length },
      };
    }
  }
}

/** docker-archive (and so `docker load`) holds one image: a multi-platform one must be written elsewhere. */
function singlePlatformOnly(destination: string, images: readonly ImageSource[]): StratumError {
  const platforms = images.map((image) =>
    image.descriptor.platform === undefined ? '?' : formatPlatform(image.descriptor.platform),
  );
  return new StratumError(
    'USAGE',
    `${destination}: a docker-archive holds one platform, but this image has ${images.length} (${platforms.join(', ')}); build with a single --platform, or write oci:DIR or oci-archive:FILE`,
  );
}

/** Copies an image between any two transports; returns the manifest digest written. */
export async function copyImage(
  from: ImageReference | string,
  to: ImageReference | string,
  options: OpenImageOptions & { readonly all?: boolean } = {},
): Promise<WriteResult & { readonly source: WriteResult['descriptor'] }> {
  // --all: a multi-platform source is copied whole (its index and every platform's image).
  const source =
    options.all === true ? await openAllPlatforms(from, options) : await openImage(from, options);
  try {
    // The destination's digest differs from the source's when its format rewrote the manifest
    // (docker-archive: Docker media types): the caller gets both, to say so.
    return { ...(await writeImage(source, to, options)), source: source.descriptor };
  } finally {
    await source.close();
  }
}
