import { readFileSync, utimesSync } from 'node:fs';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { cacheDirLayout, type CacheDirLayout } from '../util/cache-dir.js';
import { BlobStore } from '../oci/blob-store.js';
import type { LayerRef } from '../oci/image.js';
import { digestHex } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import type { KeyComponent } from './key.js';

/**
 * The layer cache on disk: entries, explain records and the stat cache, in the cache directory's
 * layout (util/cache-dir.ts). Every file is written to a temporary name and renamed into place,
 * so a build killed at any point leaves either the old file or the new one, and two builds
 * sharing the directory never see half an entry. An entry whose blob is gone is a miss (and is
 * overwritten by the rebuild).
 */
export interface CacheEntry {
  readonly key: Digest;
  /** The layer the step produced, or null for a step that changed nothing. */
  readonly layer: LayerRef | null;
  readonly createdBy: string;
  readonly instruction: string;
  readonly created: string;
}

export interface CacheEntryInfo extends CacheEntry {
  readonly lastUsed: Date;
  readonly size: number;
}

export class LayerCache {
  readonly blobs: BlobStore;
  readonly layout: CacheDirLayout;

  /** `blobs` defaults to a store inside `root`; pass the local image store's to share bytes. */
  constructor(
    readonly root: string,
    blobs?: BlobStore,
  ) {
    this.layout = cacheDirLayout(root);
    this.blobs = blobs ?? new BlobStore(this.layout.blobStore, this.layout.leases);
  }

  private entryPath(key: Digest): string {
    return join(this.layout.entries, `${digestHex(key)}.json`);
  }

  get statCachePath(): string {
    return this.layout.statCache;
  }

  /** The entry for `key`, if it exists and its layer blob is still present. Marks it used. */
  async get(key: Digest): Promise<CacheEntry | undefined> {
    const path = this.entryPath(key);
    let entry: CacheEntry;
    try {
      // Synchronous: a small file read for every step of every build, where the asynchronous
      // read's four thread-pool round trips cost more than the read.
      entry = JSON.parse(readFileSync(path, 'utf8')) as CacheEntry;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || error instanceof SyntaxError) return undefined;
      throw error;
    }
    if (entry.key !== key) return undefined;
    if (entry.layer !== null) {
      const size = await this.blobs.size(entry.layer.descriptor.digest);
      if (size !== entry.layer.descriptor.size) return undefined;
    }
    const now = new Date();
    try {
      utimesSync(path, now, now);
    } catch {
      // only the age `cache prune --older-than` goes by
    }
    return entry;
  }

  async put(entry: CacheEntry): Promise<void> {
    await writeAtomic(this.entryPath(entry.key), JSON.stringify(entry));
  }

  async list(): Promise<CacheEntryInfo[]> {
    const dir = this.layout.entries;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    const out: CacheEntryInfo[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      try {
        const path = join(dir, name);
        const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
        const entry = JSON.parse(text) as CacheEntry;
        out.push({ ...entry, lastUsed: info.mtime, size: entry.layer?.descriptor.size ?? 0 });
      } catch {
        // A torn or foreign file: prune removes it; listing skips it.
      }
    }
    return out;
  }

  async remove(key: Digest): Promise<void> {
    await rm(this.entryPath(key), { force: true });
  }

  async readExplain(id: string): Promise<ExplainRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.layout.explain, `${id}.json`), 'utf8')) as ExplainRecord;
    } catch {
      return undefined;
    }
  }

  async writeExplain(id: string, record: ExplainRecord): Promise<void> {
    await writeAtomic(join(this.layout.explain, `${id}.json`), JSON.stringify(record));
  }
}

/** What `--explain` compares against: each step's key components from the last build. */
export interface ExplainRecord {
  readonly steps: Readonly<
    Record<string, { readonly key: Digest; readonly components: readonly KeyComponent[] }>
  >;
}

/**
 * Writes one of the cache's JSON records (an entry, an explain record, a cache mount's record).
 * Not flushed to disk (~1-3 ms of fsyncs a step): after a crash of the machine a record may be
 * missing, old or torn, and each reader takes a record it cannot parse, or whose blob is missing
 * or of another size, as a miss: the step runs again. What an entry points at is durable before
 * the entry is written: the blob store flushes every blob before it gets its digest name.
 */
export async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, text, { createParents: true, durable: false });
}
