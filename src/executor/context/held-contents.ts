/**
 * The bytes of small source files, read for a COPY's cache key and kept for the copy that
 * follows a miss. On a cold build every file is read to be digested; reading it again to copy
 * it was about a third of the copy's own time for 1,000 small files (open, fstat, read and
 * close of the source, against open, write, fchown, fchmod, futimes and close of the copy).
 * The copy then writes the very bytes the cache key was computed from.
 *
 * Bounded: past `limitBytes` nothing more is kept, and the copy reads those files itself.
 */
export class HeldContents {
  private readonly bytes = new Map<string, Buffer>();
  private total = 0;

  constructor(private readonly limitBytes = 32 * 1024 * 1024) {}

  /** Keeps `data` as the content of `path`, when it fits the limit. */
  offer(path: string, data: Buffer): void {
    if (this.bytes.has(path) || this.total + data.length > this.limitBytes) return;
    this.bytes.set(path, data);
    this.total += data.length;
  }

  /** The bytes kept for `path`, handed over once (their memory goes with them). */
  take(path: string): Buffer | undefined {
    const data = this.bytes.get(path);
    if (data === undefined) return undefined;
    this.bytes.delete(path);
    this.total -= data.length;
    return data;
  }

  /** Bytes held now. */
  get size(): number {
    return this.total;
  }
}
