import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  describeMount,
  mountIdentity,
  type CacheMountIdentity,
  type MountSnapshot,
} from '../cache/mount-export.js';
import type { CacheSource } from '../cache/source.js';
import { writeAtomic } from '../cache/store.js';
import { messageOf } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { CompressionSpec } from '../oci/compression.js';
import type { LayerRef } from '../oci/image.js';
import { diffSnapshots, emptySnapshot, extractLayerAuto, scanTree, writeLayer } from '../snapshot/index.js';
import type { TreeSnapshot } from '../snapshot/index.js';
import { acquireCacheMount, cacheMountKey, type CacheMountFill } from './cache-mounts.js';
import { layerOwners } from './layer-owners.js';
import type { ProgressListener } from './progress.js';

/**
 * Cache mounts in and out of the shared caches (`--cache-from`, `--cache-to ...,mounts=true`):
 *
 * - in: a RUN about to use a cache mount whose directory is missing or empty gets what an
 *   imported cache holds for it (id, uid, gid, mode): the blob is fetched only then, so a build
 *   downloads only the mounts its RUN steps use, and only where this machine has none.
 * - out: after a successful build, each cache mount a RUN of the build names (run or hit) whose
 *   directory here holds something is packed as a tar blob; one whose directory is empty (its
 *   steps all hit, so it was never restored) is carried over from the imported cache unchanged
 *   (compressed as layers are: zstd when the build's layers are, else gzip) and handed to the
 *   exports that asked for mounts. A directory unchanged since its last packing (the same stat of
 *   every entry: names, types, modes, owners, sizes, mtimes, inodes) is not packed again: the blob
 *   of that packing is reused, from `<key>.export.json` beside the directory, so an unchanged
 *   mount costs a scan, and its export sends nothing.
 *
 * Nothing here runs unless an imported cache holds mounts or an export wants them.
 */
export class CacheMountTransfer {
  private readonly used = new Map<string, CacheMountIdentity>();
  private readonly fetches = new Map<string, Promise<LayerRef | undefined>>();

  constructor(
    private readonly root: string,
    private readonly cache: CacheSource,
    private readonly blobs: BlobStore,
    private readonly emit: ProgressListener,
    private readonly compression: CompressionSpec,
  ) {}

  /**
   * A RUN of this build names this cache mount (whether it runs or hits): exported after the
   * build when an export wants mounts and this machine's directory holds something.
   */
  noteUsed(mount: CacheMountIdentity): void {
    this.used.set(mountIdentity(mount), { id: mount.id, uid: mount.uid, gid: mount.gid, mode: mount.mode });
  }

  /** The restore for acquireCacheMount, or undefined when no imported cache holds this mount. */
  fill(mount: CacheMountIdentity, signal: AbortSignal | undefined): CacheMountFill | undefined {
    if (!this.cache.hasMount(mount)) return undefined;
    return async (into) => {
      const layer = await this.fetch(mount, signal);
      if (layer === undefined) return false;
      await extractLayerAuto(
        this.blobs.read(layer.descriptor.digest, { verify: true, size: layer.descriptor.size }),
        into,
        { layerName: `cache mount ${describeMount(mount)}`, ...(signal ? { signal } : {}) },
      );
      // What was restored counts as packed: unchanged by the build, its export sends nothing.
      const tree = await scanTree(into, signal ? { signal } : {});
      await this.writeRecord(mount, { fingerprint: fingerprint(tree), layer, size: contentBytes(tree) });
      return true;
    };
  }

  /** Once per mount and build, however many RUN steps restore it at once. */
  private fetch(mount: CacheMountIdentity, signal: AbortSignal | undefined): Promise<LayerRef | undefined> {
    const id = mountIdentity(mount);
    let fetched = this.fetches.get(id);
    if (fetched === undefined) {
      fetched = this.cache.fetchMount(mount, signal).then((found) => {
        if (found === undefined) return undefined;
        this.emit({
          kind: 'warning',
          message: `cache mount ${describeMount(mount)}: restored from ${found.source} (${found.layer.descriptor.size} bytes compressed)`,
        });
        return found.layer;
      });
      this.fetches.set(id, fetched);
    }
    return fetched;
  }

  /**
   * After a successful build: each cache mount it used, packed (or its earlier packing reused)
   * and recorded for the exports that take mounts. A mount that cannot be packed (a file changed
   * size while it was read, by another build sharing it) is a warning, and is not exported.
   */
  async export(signal: AbortSignal | undefined): Promise<void> {
    if (!this.cache.exportsMounts) return;
    for (const mount of this.used.values()) {
      signal?.throwIfAborted();
      try {
        const snapshot = await this.snapshot(mount, signal);
        if (snapshot !== undefined) this.cache.recordMount(snapshot);
      } catch (error) {
        if (signal?.aborted === true) throw error;
        this.emit({
          kind: 'warning',
          message: `cache mount ${describeMount(mount)}: not exported (${messageOf(error)})`,
        });
      }
    }
  }

  private async snapshot(
    mount: CacheMountIdentity,
    signal: AbortSignal | undefined,
  ): Promise<MountSnapshot | undefined> {
    // Nothing here (every step using it hit, so it was never restored): what an imported
    // cache holds for it travels on unchanged, so a fully cached build does not drop it.
    const names = await readdir(join(this.root, cacheMountKey(mount))).catch(() => []);
    if (names.length === 0) {
      const imported = this.cache.importedMount(mount);
      return imported === undefined ? undefined : { ...mount, layer: imported.layer, size: imported.size };
    }
    // Held as `sharing=locked` holds it: no locked step of this or another build writes meanwhile.
    const use = await acquireCacheMount(this.root, { ...mount, sharing: 'locked' }, signal ? { signal } : {});
    try {
      const tree = await scanTree(use.dir, signal ? { signal } : {});
      const print = fingerprint(tree);
      const size = contentBytes(tree);
      const earlier = await this.readRecord(mount);
      if (
        earlier !== undefined &&
        earlier.fingerprint === print &&
        (await this.blobs.size(earlier.layer.descriptor.digest)) === earlier.layer.descriptor.size
      ) {
        return { ...mount, layer: earlier.layer, size: earlier.size };
      }
      const mapOwner = await layerOwners();
      const diff = await diffSnapshots(emptySnapshot(use.dir), tree, use.dir);
      const written = await writeLayer(diff, this.blobs, {
        compression: this.compression.algorithm === 'zstd' ? this.compression : { algorithm: 'gzip' },
        ...(mapOwner === undefined ? {} : { mapOwner }),
        ...(signal ? { signal } : {}),
      });
      const layer: LayerRef = { descriptor: written.descriptor, diffId: written.diffId };
      await this.writeRecord(mount, { fingerprint: print, layer, size });
      return { ...mount, layer, size };
    } finally {
      await use.release();
    }
  }

  private recordPath(mount: CacheMountIdentity): string {
    return join(this.root, `${cacheMountKey(mount)}.export.json`);
  }

  private async readRecord(mount: CacheMountIdentity): Promise<PackedMount | undefined> {
    try {
      const parsed = JSON.parse(await readFile(this.recordPath(mount), 'utf8')) as PackedMount;
      return typeof parsed.fingerprint === 'string' && typeof parsed.layer === 'object' ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  private async writeRecord(mount: CacheMountIdentity, record: PackedMount): Promise<void> {
    await writeAtomic(this.recordPath(mount), JSON.stringify(record));
  }
}

/** The last packing of a mount directory: what it looked like, and the blob it became. */
interface PackedMount {
  readonly fingerprint: string;
  readonly layer: LayerRef;
  readonly size: number;
}

/** The stat of every entry, hashed: equal only when nothing in the directory changed. */
function fingerprint(tree: TreeSnapshot): string {
  const hash = createHash('sha256');
  for (const path of [...tree.entries.keys()].sort()) {
    const entry = tree.entries.get(path)!;
    hash.update(
      `${path}\0${entry.type}\0${entry.mode}\0${entry.uid}:${entry.gid}\0${entry.size}\0${entry.mtimeNs}\0${entry.ctimeNs}\0${entry.ino}\0${entry.linkTarget ?? ''}\n`,
    );
  }
  return hash.digest('hex');
}

function contentBytes(tree: TreeSnapshot): number {
  let total = 0;
  for (const entry of tree.entries.values()) if (entry.type === 'file') total += entry.size;
  return total;
}
