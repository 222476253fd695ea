import { isDigest } from '../oci/digest.js';
import type { LayerRef } from '../oci/image.js';
import type { Descriptor } from '../oci/types.js';
import { parseByteSize } from '../util/byte-size.js';

/**
 * `RUN --mount=type=cache` contents carried by an exported cache (`--cache-to ...,mounts=true`).
 * A cache mount is its id with its uid, gid and mode (executor/cache-mounts.ts, as BuildKit keys
 * them); its contents travel as one tar blob (compressed as a layer is, gzip or zstd), named by
 * its digest like any layer, so an unchanged mount is the same blob and is never sent twice.
 *
 * The config's `mounts` list (remote/format.ts) holds, newest first:
 *   { "id", "uid", "gid", "mode", "layer": { "descriptor", "diffId" }, "size", "used" }
 * and the manifest lists their blobs among its layers, so a registry's garbage collector keeps
 * them. The total of their compressed sizes is bounded (`mounts-max-size=`, default 1 GiB): when
 * it would be exceeded, the mounts exported longest ago go first.
 */
export interface CacheMountIdentity {
  readonly id: string;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

export interface StoredMount extends CacheMountIdentity {
  /** The contents: a tar of the directory (its entries, not the directory itself), compressed. */
  readonly layer: LayerRef;
  /** Bytes of file content in the directory when it was exported (uncompressed). */
  readonly size: number;
  /** When an export last carried it. */
  readonly used: string;
}

/** A mount as this build made it, before its export stamps `used`. */
export type MountSnapshot = Omit<StoredMount, 'used'>;

export const DEFAULT_MOUNTS_MAX_SIZE = 1024 * 1024 * 1024;

/** One string per cache: the same id under another owner or mode is another cache. */
export function mountIdentity(mount: CacheMountIdentity): string {
  return `${mount.id}\0${mount.uid}:${mount.gid}\0${mount.mode.toString(8)}`;
}

/** `id=apt uid=0 gid=0 mode=755`, how messages name a cache mount. */
export function describeMount(mount: CacheMountIdentity): string {
  return `id=${mount.id} uid=${mount.uid} gid=${mount.gid} mode=${mount.mode.toString(8)}`;
}

export function encodeMount(mount: StoredMount): Record<string, unknown> {
  const { descriptor, diffId } = mount.layer;
  return {
    id: mount.id,
    uid: mount.uid,
    gid: mount.gid,
    mode: mount.mode,
    layer: {
      descriptor: { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size },
      diffId,
    },
    size: mount.size,
    used: mount.used,
  };
}

export function decodeMount(value: unknown): StoredMount | undefined {
  if (!isRecord(value)) return undefined;
  const { id, uid, gid, mode, layer, size, used } = value;
  if (typeof id !== 'string' || id === '' || typeof used !== 'string') return undefined;
  if (![uid, gid, mode, size].every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0))
    return undefined;
  if (!isRecord(layer) || typeof layer['diffId'] !== 'string' || !isDigest(layer['diffId'])) return undefined;
  const descriptor = layer['descriptor'];
  if (!isRecord(descriptor)) return undefined;
  const { mediaType, digest, size: blobSize } = descriptor;
  if (typeof mediaType !== 'string' || typeof digest !== 'string' || !isDigest(digest)) return undefined;
  if (typeof blobSize !== 'number' || !Number.isSafeInteger(blobSize) || blobSize < 0) return undefined;
  if (descriptor['urls'] !== undefined) return undefined;
  const plain: Descriptor = { mediaType, digest, size: blobSize };
  return {
    id,
    uid: uid as number,
    gid: gid as number,
    mode: mode as number,
    layer: { descriptor: plain, diffId: layer['diffId'] },
    size: size as number,
    used,
  };
}

/**
 * This build's mounts first, then older ones it did not replace, newest first, kept while their
 * compressed sizes add up to at most `maxBytes`. What did not fit is returned too (for a
 * warning when one of this build's own mounts is left out).
 */
export function boundMounts(
  fresh: readonly StoredMount[],
  older: readonly StoredMount[],
  maxBytes: number,
): { readonly kept: StoredMount[]; readonly left: StoredMount[] } {
  const seen = new Set<string>();
  const ordered: StoredMount[] = [];
  for (const mount of fresh) {
    if (seen.has(mountIdentity(mount))) continue;
    seen.add(mountIdentity(mount));
    ordered.push(mount);
  }
  const rest = older
    .filter((mount) => !seen.has(mountIdentity(mount)))
    .sort((a, b) => (a.used < b.used ? 1 : a.used > b.used ? -1 : 0));
  for (const mount of rest) {
    if (seen.has(mountIdentity(mount))) continue;
    seen.add(mountIdentity(mount));
    ordered.push(mount);
  }
  const kept: StoredMount[] = [];
  const left: StoredMount[] = [];
  let total = 0;
  for (const mount of ordered) {
    if (total + mount.layer.descriptor.size > maxBytes) {
      left.push(mount);
      continue;
    }
    total += mount.layer.descriptor.size;
    kept.push(mount);
  }
  return { kept, left };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What `mounts=` and `mounts-max-size=` of a `--cache-to` say. */
export interface MountExportOptions {
  /** `mounts=true`: export the contents of the cache mounts the build used. */
  readonly mounts: boolean;
  /** `mounts-max-size=`: bytes (compressed) the exported mounts may take together. */
  readonly mountsMaxSize: number;
}

/**
 * Reads `mounts=true|false` and `mounts-max-size=SIZE` (`2GiB`, `500MB`) into `into`; false when
 * the attribute is neither. A bad value is thrown as `usage(reason)`.
 */
export function mountAttribute(
  key: string,
  value: string,
  into: { mounts: boolean; mountsMaxSize: number },
  usage: (reason: string) => Error,
): boolean {
  if (key === 'mounts') {
    if (value !== 'true' && value !== 'false') throw usage('mounts must be true or false');
    into.mounts = value === 'true';
    return true;
  }
  if (key === 'mounts-max-size') {
    const bytes = parseByteSize(value);
    if (bytes === undefined) throw usage(`mounts-max-size=${value}: expected a size such as 2GiB or 500MB`);
    into.mountsMaxSize = bytes;
    return true;
  }
  return false;
}

/** One warning for each of this build's mounts that mounts-max-size left out. */
export function warnLeftMounts(
  cacheName: string,
  left: readonly StoredMount[],
  fresh: readonly StoredMount[],
  maxBytes: number,
  warn: (message: string) => void,
): void {
  const freshIds = new Set(fresh.map(mountIdentity));
  for (const mount of left) {
    if (!freshIds.has(mountIdentity(mount))) continue;
    warn(
      `cache ${cacheName}: cache mount ${describeMount(mount)} (${mount.layer.descriptor.size} bytes compressed) does not fit in mounts-max-size=${maxBytes}; not exported`,
    );
  }
}
