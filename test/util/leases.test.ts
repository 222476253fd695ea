import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { sweepBlobs } from '../../src/oci/blob-sweep.js';
import { withSweep } from '../../src/util/leases.js';
import type { Digest } from '../../src/oci/types.js';

const DIST_BLOB_STORE = resolve(import.meta.dirname, '../../dist/oci/blob-store.js');
const dir = mkdtempSync(join(tmpdir(), 'stratum-leases-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const nothing = (): Promise<ReadonlySet<string>> => Promise.resolve(new Set<string>());

/**
 * Issue 26: what a running process holds of a shared blob store survives a prune in another
 * process; a SIGKILLed holder's lease is ignored and removed (its PID and start time say it is
 * gone); a holder that comes while a sweep runs waits for it, then finds the truth.
 */
describe('blob leases and the sweep', () => {
  it('a blob another live process holds stays; once that process is SIGKILLed, the sweep removes it and its lease', async () => {
    const root = join(dir, 'two-processes');
    const leases = join(dir, 'two-processes-leases');
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { BlobStore } from ${JSON.stringify(DIST_BLOB_STORE)};
         const info = await new BlobStore(${JSON.stringify(root)}, ${JSON.stringify(leases)}).putBytes(Buffer.from('held by a running build'));
         console.log(info.digest);
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const digest = await new Promise<Digest>((done) =>
      holder.stdout.once('data', (chunk: Buffer) => {
        done(chunk.toString().trim() as Digest);
      }),
    );
    const store = new BlobStore(root, leases);
    const loose = await new BlobStore(root).putBytes(Buffer.from('nobody needs this'));
    const swept = await sweepBlobs(store, { referenced: nothing });
    expect(swept.removedBlobs).toBe(1);
    expect(await store.has(digest)).toBe(true);
    expect(existsSync(new BlobStore(root).path(loose.digest))).toBe(false);
    // Our own `has` leased it too: let go, so only the other process holds it.
    await store.releaseLease();

    holder.kill('SIGKILL');
    await new Promise((done) => holder.once('close', done));
    expect(readdirSync(leases).filter((name) => name.startsWith('lease-'))).toHaveLength(1);
    expect((await sweepBlobs(store, { referenced: nothing })).removedBlobs).toBe(1);
    expect(existsSync(new BlobStore(root).path(digest as `sha256:${string}`))).toBe(false);
    expect(readdirSync(leases)).toEqual([]);
  });

  it('referenced blobs and partial blobs stay; freed counts only what went', async () => {
    const root = join(dir, 'references');
    const plain = new BlobStore(root);
    const kept = await plain.putBytes(Buffer.from('an image needs me'));
    const gone = await plain.putBytes(Buffer.from('12345'));
    writeFileSync(join(root, 'blobs/sha256/.tmp-1-partial'), 'a writer of mine may still run');
    const swept = await sweepBlobs(new BlobStore(root, join(dir, 'references-leases')), {
      referenced: () => Promise.resolve(new Set([kept.digest])),
    });
    expect(swept).toEqual({ removedBlobs: 1, freedBytes: 5 });
    expect(await plain.has(kept.digest)).toBe(true);
    expect(await plain.has(gone.digest)).toBe(false);
    expect(existsSync(join(root, 'blobs/sha256/.tmp-1-partial'))).toBe(true);
  });

  it('a holder that comes while a sweep runs waits until it is over, then sees what is really there', async () => {
    const root = join(dir, 'waiting');
    const leases = join(dir, 'waiting-leases');
    const info = await new BlobStore(root).putBytes(Buffer.from('about to be swept'));
    const holder = new BlobStore(root, leases);
    let answered: boolean | undefined;
    let answer: Promise<boolean> | undefined;
    await withSweep(leases, async () => {
      answer = holder.has(info.digest).then((present) => (answered = present));
      await new Promise((wait) => setTimeout(wait, 300));
      expect(answered).toBeUndefined();
      rmSync(holder.path(info.digest)); // what the sweep decided
    });
    // However long the holder takes to see the sweep end (a loaded machine), it then answers from disk.
    expect(await answer).toBe(false);
    await holder.releaseLease();
  });
});
