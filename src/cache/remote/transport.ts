import type { Readable } from 'node:stream';
import type { BlobStore } from '../../oci/blob-store.js';
import type { Descriptor, Digest } from '../../oci/types.js';

/**
 * Where a cache artifact (format.ts) lives: the one thing the local directory (local.ts) and the
 * registry (registry.ts) do differently. Everything else, what to read, verify, merge and write,
 * is the artifact's (import.ts, export.ts), as BuildKit's remotecache/v1 is over a content
 * store that its `local` and `registry` exporters only provide.
 *
 * A transport is bound to one cache: one tag of one repository, or the `stratum-cache` tag of
 * one layout directory.
 */
export interface CacheTransport {
  /** `registry:host/repo:tag` or `local:DIR`: how messages, progress and `--explain` name it. */
  readonly name: string;
  /**
   * The manifest under the cache's tag, whatever its type (so an image someone tagged there is
   * seen for what it is); undefined when there is none yet. A transport for which absence is
   * worth a warning on import (a directory that is not there) throws NOT_FOUND instead.
   */
  readManifest(signal?: AbortSignal): Promise<ManifestBytes | undefined>;
  /** A blob, checked against its digest and size as it streams. */
  readBlob(descriptor: Descriptor, signal?: AbortSignal): Readable;
  /** Whether the cache holds the blob already. */
  hasBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean>;
  /**
   * Puts a blob into the cache, the cheapest way it can: `mounted` when no byte travelled (a
   * registry's cross-repository mount, a hard link into the directory), `uploaded` when copied,
   * `missing` when `from` lacks it and no other way had it.
   */
  putBlob(descriptor: Descriptor, from: BlobStore | Buffer, options?: PutBlobOptions): Promise<PutOutcome>;
  /** Points the cache's tag at this manifest; returns its digest. */
  putManifest(bytes: Buffer, signal?: AbortSignal): Promise<Digest>;
  /**
   * Whether asking for every blob an older entry names is cheap (a stat in a directory): then an
   * export drops the entries whose blob is gone before it writes. A registry (a request per blob,
   * for up to 2000 entries) is not asked; it refuses a manifest that names a lost blob instead.
   */
  readonly cheapBlobChecks: boolean;
  /**
   * Before the build, for `--cache-to`: throws a USAGE error when the destination can never be
   * written, so the build's work is not spent first.
   */
  checkWritable?(): Promise<void>;
  close?(): Promise<void>;
}

/** A manifest as a transport holds it: its bytes, and its media type (of the index entry or the registry). */
export interface ManifestBytes {
  readonly bytes: Buffer;
  readonly mediaType: string;
}

export interface PutBlobOptions {
  readonly signal?: AbortSignal | undefined;
  /** Repositories of the same registry that may hold the blob, to mount it from (layers only). */
  readonly mountFrom?: readonly string[] | undefined;
}

export type PutOutcome = 'mounted' | 'uploaded' | 'missing';
