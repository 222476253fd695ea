import type { ExplainRecord, LayerCache } from '../cache/store.js';
import { StatCache } from './context/index.js';

/**
 * What a process that builds again and again (`stratum build --watch`) keeps between its
 * builds, so that a rebuild pays only for what changed:
 *
 * - the snapshotter chosen by the first build, with its unpacked-layer session: the overlay
 *   probe, the per-layer opaque-root answers (one helper process a build otherwise) and the
 *   session directory are made once; each build still mounts a fresh upperdir per step and
 *   unmounts it, so nothing stays mounted between builds;
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
 * `flush()` writes what the builds deferred; `close()` flushes and removes the snapshotter's
 * session (unmounting anything a failed build left). Without a session a build does all of it
 * itself, as before.
 */
/** What a session keeps and closes at its end (the snapshotter: snapshotters.ts's choice). */
interface Closable {
  close(): Promise<void>;
}

export class BuildSession {
  private readonly snapshotters = new Map<string, Promise<Closable>>();
  private readonly statCaches = new Map<string, Promise<StatCache>>();
  private readonly explains = new Map<
    string,
    { readonly cache: LayerCache; readonly id: string; record?: ExplainRecord; dirty: boolean }
  >();
  private closed = false;

  /** The snapshotter chosen for `key` (cache dir and request), choosing it the first time. */
  snapshotter<T extends Closable>(key: string, choose: () => Promise<T>): Promise<T> {
    const held = this.snapshotters.get(key);
    // Only `choose` puts a value under `key`, so what is held is its T.
    if (held !== undefined) return held as Promise<T>;
    const chosen = choose();
    this.snapshotters.set(key, chosen);
    // A choice that failed is made again by the next build (the cause may be fixed by then).
    chosen.catch(() => this.snapshotters.delete(key));
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
      for (const chosen of this.snapshotters.values()) {
        const snapshotter = await chosen.catch(() => undefined);
        await snapshotter?.close();
      }
      this.snapshotters.clear();
    }
  }
}
