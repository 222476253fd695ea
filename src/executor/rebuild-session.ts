import type { ExplainRecord, LayerCache } from '../cache/store.js';
import { StatCache } from './context/index.js';

/** What a session keeps and closes at its end (the overlay mounts: snapshot/choose.ts). */
interface Closable {
  close(): Promise<void>;
}

/**
 * What a process that builds again and again (`stratum build --watch`) keeps between its
 * builds, so that a rebuild pays only for what changed:
 *
 * - the overlay mounts of the first build, with their unpacked-layer session: the overlay
 *   probe, the per-layer opaque-root answers (one helper process a build otherwise) and the
 *   session directory are made once; each build still mounts a fresh upperdir per step and
 *   unmounts it (a failed build's are swept), so nothing stays mounted between builds;
 * - the context's stat cache, in memory (read once, saved after each build's outputs are written
 *   instead of before);
 * - the `--explain` record of the last build, in memory (written after the outputs too).
 *
 * None of these can go stale: an unpacked layer directory never changes (it is named by its
 * DiffID), the stat cache checks every file's stat against its record, and the explain record
 * is this process's own last build. Every input that can change between builds (the
 * Dockerfile, .dockerignore, base images, cache entries, the context's files) is read again
 * by every build.
 *
 * `flush()` writes what the builds deferred; `close()` flushes and removes the overlay
 * session. Without a session a build does all of it
 * itself, as before.
 */

export class RebuildSession {
  private readonly kept = new Map<string, Promise<Closable>>();
  private readonly statCaches = new Map<string, Promise<StatCache>>();
  private readonly explains = new Map<
    string,
    { readonly cache: LayerCache; readonly id: string; record?: ExplainRecord; dirty: boolean }
  >();
  private closed = false;

  /** The resource kept under `key` (the overlay mounts of a cache dir), opening it the first time. */
  keep<T extends Closable>(key: string, choose: () => Promise<T>): Promise<T> {
    const held = this.kept.get(key);
    // Only `choose` puts a value under `key`, so what is held is its T.
    if (held !== undefined) return held as Promise<T>;
    const chosen = choose();
    this.kept.set(key, chosen);
    // A choice that failed is made again by the next build (the cause may be fixed by then).
    chosen.catch(() => this.kept.delete(key));
    return chosen;
  }

  statCache(path: string): Promise<StatCache> {
    let cache = this.statCaches.get(path);
    if (cache === undefined) {
      cache = StatCache.open(path);
      this.statCaches.set(path, cache);
      cache.catch(() => this.statCaches.delete(path));
    }
    return cache;
  }

  /** The last build's explain record for `id`: this session's, else the one on disk. */
  async readExplain(cache: LayerCache, id: string): Promise<ExplainRecord | undefined> {
    const held = this.explains.get(`${cache.root}\0${id}`);
    if (held !== undefined) return held.record;
    return cache.readExplain(id);
  }

  writeExplain(cache: LayerCache, id: string, record: ExplainRecord): void {
    this.explains.set(`${cache.root}\0${id}`, { cache, id, record, dirty: true });
  }

  /** Writes the stat caches and explain records the builds left in memory. */
  async flush(): Promise<void> {
    for (const held of this.explains.values()) {
      if (!held.dirty || held.record === undefined) continue;
      held.dirty = false;
      await held.cache.writeExplain(held.id, held.record);
    }
    for (const cache of this.statCaches.values()) await (await cache.catch(() => undefined))?.save();
  }

  /** Flushes, then unmounts and removes what the snapshotters hold. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      for (const chosen of this.kept.values()) {
        const snapshotter = await chosen.catch(() => undefined);
        await snapshotter?.close();
      }
      this.kept.clear();
    }
  }
}
