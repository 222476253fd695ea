import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { OffThreadDigest, sharedBuffer } from '../../src/oci/hash-worker.js';

/** Chunks of every size class: empty, tiny, exactly a slot (1 MiB), and several slots at once. */
function chunks(): Buffer[] {
  return [0, 1, 511, 64 * 1024, 1024 * 1024, 3 * 1024 * 1024 + 17, 5].map((size) => randomBytes(size));
}

async function offThread(parts: readonly Buffer[]): Promise<readonly (string | number)[]> {
  const digest = new OffThreadDigest(['sha256', 'crc32', 'sha512']);
  for (const part of parts) await digest.update(part);
  return digest.results();
}

describe('OffThreadDigest', () => {
  it('gives the digests and crc32 node:crypto and node:zlib give on the main thread', async () => {
    const parts = chunks();
    const whole = Buffer.concat(parts);
    expect(await offThread(parts)).toEqual([
      createHash('sha256').update(whole).digest('hex'),
      crc32(whole) >>> 0,
      createHash('sha512').update(whole).digest('hex'),
    ]);
  });

  it('keeps digests in parallel apart, and a chunk reused at once after update does not change the result', async () => {
    const inputs = [0, 1, 2, 3, 4, 5].map(() => chunks());
    const results = await Promise.all(inputs.map((parts) => offThread(parts)));
    results.forEach((result, index) => {
      expect(result[0]).toBe(createHash('sha256').update(Buffer.concat(inputs[index]!)).digest('hex'));
    });

    const reused = Buffer.alloc(1024 * 1024);
    const digest = new OffThreadDigest(['sha256']);
    const expected = createHash('sha256');
    for (let round = 0; round < 40; round++) {
      reused.fill(round);
      expected.update(reused);
      await digest.update(reused);
    }
    expect((await digest.results())[0]).toBe(expected.digest('hex'));
  });

  it('pieces: small ones packed into shared slots, big ones in shared memory read in place, all in order', async () => {
    const shared = sharedBuffer(1024 * 1024);
    randomBytes(shared.length).copy(shared);
    const pieces: Buffer[] = [];
    for (let i = 0; i < 300; i++) pieces.push(randomBytes(5), randomBytes(65_535));
    pieces.push(shared.subarray(100), randomBytes(3), shared.subarray(0, 70_000), shared.subarray(0, 10));
    const digest = new OffThreadDigest(['sha256', 'crc32']);
    await digest.update(pieces);
    const whole = Buffer.concat(pieces);
    expect(await digest.results()).toEqual([
      createHash('sha256').update(whole).digest('hex'),
      crc32(whole) >>> 0,
    ]);
  });

  it("memory read in place is the caller's again only once the worker has read it", async () => {
    const block = sharedBuffer(1024 * 1024);
    const digest = new OffThreadDigest(['sha256']);
    const expected = createHash('sha256');
    for (let round = 0; round < 20; round++) {
      block.fill(round);
      expected.update(block);
      // Not awaited when there is room: the promise is what says the block may change.
      await digest.update(block);
    }
    expect((await digest.results())[0]).toBe(expected.digest('hex'));
  });

  it('an update after the results were asked for is an error, not a digest that leaves it out', async () => {
    const digest = new OffThreadDigest(['sha256']);
    await digest.update(Buffer.from('x'));
    const results = digest.results();
    expect(() => digest.update(Buffer.from('y'))).toThrow(/update after results/);
    expect((await results)[0]).toBe(createHash('sha256').update('x').digest('hex'));
  });

  it('an abandoned digest does not stop the next one', async () => {
    const abandoned = new OffThreadDigest(['sha256']);
    await abandoned.update(randomBytes(1000));
    abandoned.abandon();
    const next = new OffThreadDigest(['sha256']);
    await next.update(Buffer.from('x'));
    expect((await next.results())[0]).toBe(createHash('sha256').update('x').digest('hex'));
  });

  it('the worker keeps a process alive while a digest is open, and not once they are all ended', () => {
    // dist/, as the CLI runs it (npm run build first); a process left hanging fails by timeout.
    const script = `
      import { OffThreadDigest } from ${JSON.stringify(new URL('../../dist/oci/hash-worker.js', import.meta.url).href)};
      const done = new OffThreadDigest(['sha256']);
      done.update(Buffer.from('x'));
      const abandoned = new OffThreadDigest(['crc32']);
      abandoned.update(Buffer.from('y'));
      abandoned.abandon();
      // Nothing but the worker's answer keeps the event loop going here.
      done.results().then(([hex]) => console.log(hex));
    `;
    const started = Date.now();
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(output.trim()).toBe(createHash('sha256').update('x').digest('hex'));
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
