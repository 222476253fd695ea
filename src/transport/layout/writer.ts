import { readdirSync, rmdirSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { BlobStore } from '../../oci/blob-store.js';
import { makeDirectories } from '../../util/directories.js';
import { directoryAccess } from '../files.js';
import { isImageIndex, type AnyImage, type ImageSource } from '../../oci/image.js';
import { serializeIndex } from '../../oci/json.js';
import { REF_NAME, readLayoutIndex, refName } from './reader.js';
import { MediaType, type Descriptor, type ImageIndex } from '../../oci/types.js';
import { syncDirectory, temporarySibling, writeFileAtomic } from '../../util/atomic-file.js';
import { withLock } from './lock.js';
import { resolvedNow } from '../../util/now.js';

/**
 * Writes an image into an OCI image layout directory (image-layout.md, version 1.0.0).
 *
 * - Blobs go through the BlobStore (temp file + rename), so they are shared between tags and
 *   images and a blob already present is not copied again.
 * - index.json is rewritten last, atomically (temp + rename) and under a lock file, so a reader
 *   sees the old index or the new one, and concurrent writers of different tags both land.
 * - Tags follow containers/image (skopeo): writing a tag removes any other entry with that tag
 *   and keeps every other entry; an untagged write replaces an untagged entry of the same
 *   digest, otherwise appends.
 * - A layout where no directory is yet is written beside it (`.NAME.tmp-…`) and renamed into
 *   place whole: no reader and no other writer sees it half-written, and a failure removes only
 *   that staging directory (and parents this call made, if still empty). Into an existing
 *   directory a failure can leave unreferenced blobs (complete and verified, never partial),
 *   which no index entry names; index.json is untouched.
 *
 * The manifest's bytes are stored exactly as the source has them, Docker schema 2 included.
 */

export interface LayoutWriteOptions {
  readonly signal?: AbortSignal;
  /** Blobs copied at once (default 3): overlaps reading, hashing and writing of layers. */
  readonly concurrency?: number;
  /** Where an archive bound for a FIFO or device is assembled (oci/atomic-file.ts). */
  readonly tmpDir?: string;
}

export interface WriteResult {
  /** The manifest's digest. */
  readonly digest: string;
  /** The descriptor written into index.json (without its ref.name). */
  readonly descriptor: Descriptor;
  /** Why `digest` is not the source's manifest digest, when the format made another manifest. */
  readonly rewritten?: string;
}

const LAYOUT_FILE = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

export function directoryState(dir: string): Promise<'missing' | 'empty' | 'layout' | 'other'> {
  return resolvedNow(() => directoryStateNow(dir));
}

function directoryStateNow(dir: string): 'missing' | 'empty' | 'layout' | 'other' {
  let names: string[];
  try {
    // Synchronous: a layout's top directory holds a handful of names, and this is asked at a
    // build's start and again at its output, where a thread-pool round trip costs more.
    names = readdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 'missing';
    if (errnoCode(error) === 'ENOTDIR') return 'other';
    throw error;
  }
  if (names.includes('oci-layout')) return 'layout';
  // Only blobs so far (the layer cache shares the local store's blob directory and may have
  // written layers before the first image is stored), or another writer's oci-layout and
  // index.json on their way in (a concurrent put into a new store): a layout in the making.
  return names.every(inTheMaking) ? 'empty' : 'other';
}

function inTheMaking(name: string): boolean {
  return (
    name === 'blobs' ||
    name === 'index.json.lock' ||
    name.startsWith('.oci-layout.tmp-') ||
    name.startsWith('.index.json.tmp-')
  );
}

/** Copies every blob the manifest names into `store`, verified, skipping ones already there. */
export async function copyBlobs(
  source: ImageSource,
  store: BlobStore,
  options: LayoutWriteOptions = {},
): Promise<void> {
  const manifest = source.manifest.value;
  const unique = new Map<string, Descriptor>();
  for (const descriptor of [manifest.config, ...manifest.layers]) unique.set(descriptor.digest, descriptor);
  const queue = [...unique.values()];
  // On the first failure the other workers stop too, and the call returns only once all of
  // them have, so a caller cleaning up after the error never races a blob still being written.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      signal.throwIfAborted();
      const descriptor = next;
      if ((await store.size(descriptor.digest)) === descriptor.size) continue;
      const local = source.localBlobPath?.(descriptor);
      if (local !== undefined && (await store.linkFrom(local, descriptor.digest))) continue;
      await store.putStream(await source.openBlob(descriptor, signal), descriptor.digest);
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? 3, queue.length));
  const results = await Promise.allSettled(
    Array.from({ length: workers }, () =>
      worker().catch((error: unknown) => {
        stop.abort(error);
        throw error;
      }),
    ),
  );
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw options.signal?.aborted === true ? options.signal.reason : stop.signal.reason;
  // The manifest last, linked as the blobs are when the source's store holds it (a build's
  // does): written anew, it costs a flush to disk.
  const manifestBlob = source.descriptor;
  if (manifestBlob.digest === source.manifest.digest) {
    if ((await store.size(manifestBlob.digest)) === manifestBlob.size) return;
    const local = source.localBlobPath?.(manifestBlob);
    if (local !== undefined && (await store.linkFrom(local, manifestBlob.digest))) return;
  }
  await store.putBytes(source.manifest.raw, source.manifest.digest);
}

/** Copies an image's blobs and manifest, or every image of an index and then the index itself. */
export async function copyAnyImage(
  source: AnyImage,
  store: BlobStore,
  options: LayoutWriteOptions = {},
): Promise<void> {
  if (!isImageIndex(source)) return copyBlobs(source, store, options);
  for (const image of source.images) await copyBlobs(image, store, options);
  await store.putBytes(source.index.raw, source.index.digest);
}

/** The index.json entry for an image, or for an index (a multi-platform image, nested as BuildKit writes it). */
export function manifestDescriptor(source: AnyImage): Descriptor {
  if (isImageIndex(source))
    return { mediaType: MediaType.ociIndex, digest: source.index.digest, size: source.index.raw.length };
  return {
    mediaType: source.manifest.value.mediaType ?? source.descriptor.mediaType,
    digest: source.manifest.digest,
    size: source.manifest.raw.length,
  };
}

/** index.json's manifests after adding `descriptor` under `tags` (see the module comment). */
export function updatedEntries(
  existing: readonly Descriptor[],
  descriptor: Descriptor,
  tags: readonly string[],
): Descriptor[] {
  let entries = [...existing];
  if (tags.length === 0) {
    const same = entries.findIndex(
      (entry) => entry.digest === descriptor.digest && refName(entry) === undefined,
    );
    if (same === -1) entries.push(descriptor);
    else entries[same] = descriptor;
    return entries;
  }
  entries = entries.filter((entry) => {
    const name = refName(entry);
    return name === undefined || !tags.includes(name);
  });
  for (const tag of tags) entries.push({ ...descriptor, annotations: { [REF_NAME]: tag } });
  return entries;
}

/** Rewrites index.json of the layout at `dir` with `change` applied, under the layout's lock. */
export async function updateLayoutIndex(
  dir: string,
  change: (existing: readonly Descriptor[]) => Descriptor[],
  signal?: AbortSignal,
): Promise<void> {
  await withLock(
    join(dir, 'index.json.lock'),
    async () => {
      let base: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] };
      try {
        base = (await readLayoutIndex(directoryAccess(dir), `oci:${dir}`)).value;
      } catch (error) {
        if (!(error instanceof StratumError && error.code === 'NOT_FOUND')) throw error;
      }
      const next: ImageIndex = {
        ...base,
        mediaType: base.mediaType ?? MediaType.ociIndex,
        manifests: change(base.manifests),
      };
      await writeFileAtomic(join(dir, 'index.json'), serializeIndex(next));
    },
    signal ? { signal } : {},
  );
}

/** Prepares `dir` as a layout; returns a cleanup that undoes a directory this call created. */
export async function prepareLayout(dir: string): Promise<() => Promise<void>> {
  const state = await directoryState(dir);
  if (state === 'other') {
    throw new StratumError(
      'USAGE',
      `oci:${dir}: exists and is not an OCI image layout (no oci-layout file); refusing to write into it`,
    );
  }
  let created: string | undefined;
  if (state === 'missing') created = await makeDirectories(dir);
  if (state !== 'layout') await writeFileAtomic(join(dir, 'oci-layout'), LAYOUT_FILE);
  return async () => {
    if (created !== undefined) await rm(created, { recursive: true, force: true });
    else if (state === 'empty') {
      // Leave the directory as we found it: empty.
      for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
    }
  };
}

export async function writeOciLayout(
  source: AnyImage,
  dir: string,
  tags: readonly string[],
  options: LayoutWriteOptions = {},
): Promise<WriteResult> {
  if ((await directoryState(dir)) === 'missing') {
    const written = await writeNewLayout(source, dir, tags, options);
    if (written !== undefined) return written;
    // Another writer made the directory meanwhile: this image goes into it as into any layout.
  }
  const undo = await prepareLayout(dir);
  try {
    return await writeIntoLayout(source, dir, tags, options);
  } catch (error) {
    await undo();
    throw error;
  }
}

async function writeIntoLayout(
  source: AnyImage,
  dir: string,
  tags: readonly string[],
  options: LayoutWriteOptions,
): Promise<WriteResult> {
  await copyAnyImage(source, new BlobStore(dir), options);
  const descriptor = manifestDescriptor(source);
  await updateLayoutIndex(dir, (existing) => updatedEntries(existing, descriptor, tags), options.signal);
  return { digest: descriptor.digest, descriptor };
}

/**
 * A whole new layout, staged beside `dir` and renamed into place. Before, a failed first write
 * removed the directory it had made with everything in it, a concurrent writer's finished image
 * included. Undefined when `dir` appeared meanwhile and holds something (another writer's).
 */
async function writeNewLayout(
  source: AnyImage,
  dir: string,
  tags: readonly string[],
  options: LayoutWriteOptions,
): Promise<WriteResult | undefined> {
  const target = resolve(dir);
  const parent = dirname(target);
  const createdParent = await makeDirectories(parent);
  const staging = temporarySibling(target);
  try {
    await mkdir(staging);
    await writeFileAtomic(join(staging, 'oci-layout'), LAYOUT_FILE);
    const written = await writeIntoLayout(source, staging, tags, options);
    try {
      await rename(staging, target);
    } catch (error) {
      const code = errnoCode(error);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      await rm(staging, { recursive: true, force: true });
      return undefined;
    }
    await syncDirectory(parent);
    return written;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (createdParent !== undefined) removeEmptyUpTo(parent, createdParent);
    throw error;
  }
}

/** Removes `dir` and its parents up to `top`, as long as each is empty. */
function removeEmptyUpTo(dir: string, top: string): void {
  for (let current = dir; current.startsWith(top); current = dirname(current)) {
    try {
      rmdirSync(current);
    } catch {
      return; // not empty (someone else's now), or gone
    }
    if (current === top) return;
  }
}
