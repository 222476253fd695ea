import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StratumError } from '../errors.js';
import { storeImage } from '../oci/stored-image.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { ImageSource } from '../oci/image.js';
import { hostPlatform } from '../oci/platform.js';
import type { ImageConfig, Platform } from '../oci/types.js';
import { writeDirectoryLayer } from '../snapshot/index.js';

/**
 * `--build-context NAME=VALUE`, as buildx: `FROM NAME`, `COPY --from=NAME` and
 * `RUN --mount=from=NAME` then use VALUE instead of an image called NAME.
 *
 *  - `docker-image://REF`: the image REF (local store first, then its registry);
 *  - `oci-layout://DIR[:TAG]`: the image in an OCI layout (`oci:DIR[:TAG]`);
 *  - a directory: its files, as a one-layer image made on the fly. Its layer digest is its
 *    content's, so the cache keys of the steps that use it follow the content, not the path.
 */

export type NamedContext =
  | { readonly kind: 'image'; readonly reference: string }
  | { readonly kind: 'directory'; readonly dir: string };

export function parseBuildContexts(values: readonly string[]): Record<string, NamedContext> {
  const out: Record<string, NamedContext> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    const name = eq < 0 ? '' : value.slice(0, eq);
    const target = value.slice(eq + 1);
    if (name === '' || target === '')
      throw new StratumError(
        'USAGE',
        `--build-context ${value}: expected NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]`,
      );
    if (target.startsWith('docker-image://'))
      out[name] = { kind: 'image', reference: target.slice('docker-image://'.length) };
    else if (target.startsWith('oci-layout://'))
      out[name] = { kind: 'image', reference: `oci:${target.slice('oci-layout://'.length)}` };
    else if (/^[a-z][a-z0-9+.-]*:\/\//.test(target))
      throw new StratumError(
        'USAGE',
        `--build-context ${value}: unsupported source (expected a directory, docker-image:// or oci-layout://)`,
      );
    else out[name] = { kind: 'directory', dir: resolve(target) };
  }
  return out;
}

/** Every directory must exist before the build starts. */
export async function checkBuildContexts(contexts: Readonly<Record<string, NamedContext>>): Promise<void> {
  for (const [name, context] of Object.entries(contexts)) {
    if (context.kind !== 'directory') continue;
    const dirStat = await stat(context.dir).catch(() => undefined);
    if (dirStat?.isDirectory() !== true)
      throw new StratumError('USAGE', `--build-context ${name}=${context.dir}: not a directory`);
  }
}

/**
 * Wraps an image resolver so that names given with --build-context resolve to their value. A
 * directory's image is made once per build and handed out again (its close is a no-op).
 */
export function withNamedContexts(
  contexts: Readonly<Record<string, NamedContext>>,
  blobs: BlobStore,
  resolveImage: (reference: string, signal?: AbortSignal, platform?: Platform) => Promise<ImageSource>,
): (reference: string, signal?: AbortSignal, platform?: Platform) => Promise<ImageSource> {
  const made = new Map<string, Promise<ImageSource>>();
  return (reference, signal, platform) => {
    const context = contexts[reference];
    if (context === undefined) return resolveImage(reference, signal, platform);
    if (context.kind === 'image') return resolveImage(context.reference, signal, platform);
    let image = made.get(reference);
    if (image === undefined) {
      image = directoryImage(context.dir, reference, blobs, signal);
      made.set(reference, image);
    }
    return image;
  };
}

async function directoryImage(
  dir: string,
  name: string,
  blobs: BlobStore,
  signal?: AbortSignal,
): Promise<ImageSource> {
  const layer = await writeDirectoryLayer(dir, blobs, signal ? { signal } : {});
  const platform = hostPlatform();
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    config: {},
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
  };
  return storeImage(blobs, { name: `--build-context ${name}=${dir}`, config, layers: [layer.descriptor] });
}
