import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar, { type Header } from 'tar-stream';

/**
 * A tar file written in one streaming pass, for image archives. Member headers are fixed
 * (uid/gid 0, empty uname/gname, mode 0644/0755, one mtime for all) so the same image always
 * gives the same archive bytes. Member sizes must be known up front (tar headers precede data);
 * a stream that yields more or fewer bytes than declared fails the archive.
 */
function settle(resolve: () => void, reject: (error: Error) => void): (error?: Error | null) => void {
  return (error) => {
    if (error) reject(error);
    else resolve();
  };
}

export class TarFileWriter {
  private readonly pack = tar.pack();
  private readonly done: Promise<void>;
  private failed: Error | undefined;

  constructor(
    path: string,
    private readonly mtime: Date,
  ) {
    this.done = pipeline(this.pack, createWriteStream(path, { flags: 'wx' }));
    this.done.catch((error: unknown) => {
      this.failed ??= error instanceof Error ? error : new Error(String(error));
    });
  }

  private header(
    name: string,
    size: number,
    type: 'file' | 'directory',
  ): Partial<Header> & Pick<Header, 'name'> {
    return {
      name,
      size,
      type,
      mode: type === 'directory' ? 0o755 : 0o644,
      mtime: this.mtime,
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
    };
  }

  private check(): void {
    if (this.failed !== undefined) throw this.failed;
  }

  async directory(name: string): Promise<void> {
    this.check();
    await new Promise<void>((resolve, reject) => {
      this.pack.entry(this.header(name, 0, 'directory'), settle(resolve, reject));
    });
  }

  async buffer(name: string, data: Buffer): Promise<void> {
    this.check();
    await new Promise<void>((resolve, reject) => {
      this.pack.entry(this.header(name, data.length, 'file'), data, settle(resolve, reject));
    });
  }

  /** Streams `size` bytes from `source` as member `name`. */
  async stream(name: string, size: number, source: Readable, signal?: AbortSignal): Promise<void> {
    this.check();
    let entryError: Error | null | undefined;
    const finished = new Promise<void>((resolve, reject) => {
      const entry = this.pack.entry(this.header(name, size, 'file'), (error) => {
        entryError = error;
        if (error) reject(error);
        else resolve();
      });
      // The failure is reported through the callback/reject; a destroyed Sink also emits
      // 'error', which must not become an uncaught exception.
      entry.on('error', () => undefined);
      // tar-stream's entries are streamx Writables; feed them by hand with backpressure
      // rather than relying on Node's pipeline() to understand them.
      (async () => {
        for await (const chunk of source) {
          signal?.throwIfAborted();
          if (!entry.write(chunk as Buffer))
            await new Promise<void>((drained) =>
              entry.once('drain', () => {
                drained();
              }),
            );
        }
        entry.end(undefined);
      })().catch((error: unknown) => {
        source.destroy();
        entry.destroy(error instanceof Error ? error : new Error(String(error)));
        reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
    await finished;
    if (entryError) throw entryError;
  }

  async finish(): Promise<void> {
    this.check();
    this.pack.finalize();
    await this.done;
  }

  /** Stops writing after a failure; the caller removes the file. */
  async abort(error: unknown): Promise<void> {
    this.pack.destroy(error instanceof Error ? error : new Error(String(error)));
    await this.done.catch(() => undefined);
  }
}
