import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { StratumError } from '../../src/errors.js';
import { copyImage, openImage, writeImage } from '../../src/images/images.js';
import { ImageStore, defaultDataDir } from '../../src/transport/store/store.js';
import { verifyOciLayout } from '../../src/transport/index.js';
import { directoryState } from '../../src/transport/layout/writer.js';
import { makeImage, readAllBlobs } from '../oci/image-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'stratum-store-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the local image store', () => {
  it('lives in $STRATUM_DATA_DIR, else $XDG_DATA_HOME/stratum, else ~/.local/share/stratum', () => {
    expect(defaultDataDir({ STRATUM_DATA_DIR: '/d', XDG_DATA_HOME: '/x' })).toBe('/d');
    expect(defaultDataDir({ XDG_DATA_HOME: '/x' })).toBe('/x/stratum');
    expect(defaultDataDir({})).toMatch(/\.local\/share\/stratum$/);
  });

  it('stores images under normalised names, resolves and lists them, and is an OCI layout itself', async () => {
    const store = new ImageStore(join(dir, 'data'));
    const one = await makeImage([{ files: { one: '1' } }]);
    const two = await makeImage([{ files: { two: '2' } }]);
    await store.put(one.source, ['app', 'registry.example:5000/team/app:1.0']);
    await writeImage(two.source, 'other:2', { dataDir: join(dir, 'data') });
    expect((await store.resolve('app:latest'))?.digest).toBe(one.source.manifest.digest);
    expect((await store.resolve('app'))?.digest).toBe(one.source.manifest.digest);
    expect(await store.resolve('missing')).toBeUndefined();
    const list = await store.list();
    expect(list.map((image) => [image.name, image.digest])).toEqual([
      ['app:latest', one.source.manifest.digest],
      ['other:2', two.source.manifest.digest],
      ['registry.example:5000/team/app:1.0', one.source.manifest.digest],
    ]);
    expect(list[0]!.created).toBe('2024-01-02T03:04:05Z');
    expect(list[0]!.size).toBe(
      one.source.manifest.raw.length + [...one.blobs.values()].reduce((sum, blob) => sum + blob.length, 0),
    );
    expect((await verifyOciLayout(store.root)).blobs).toBe(6);
    const back = await openImage('registry.example:5000/team/app:1.0', { dataDir: join(dir, 'data') });
    expect((await readAllBlobs(back)).size).toBe(2);
  });

  it('re-pointing a name replaces only that name; untag removes it', async () => {
    const store = new ImageStore(join(dir, 'retag'));
    const one = await makeImage([{ files: { one: '1' } }]);
    const two = await makeImage([{ files: { two: '2' } }]);
    await store.put(one.source, ['a', 'b']);
    await store.put(two.source, ['a']);
    expect((await store.resolve('a'))?.digest).toBe(two.source.manifest.digest);
    expect((await store.resolve('b'))?.digest).toBe(one.source.manifest.digest);
    expect(await store.untag('b')).toBe(true);
    expect((await store.list()).map((image) => image.name)).toEqual(['a:latest']);
  });

  it('concurrent puts of different names all land (index.json is updated under a lock)', async () => {
    const store = new ImageStore(join(dir, 'concurrent'));
    const images = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((index) => makeImage([{ files: { [`f${index}`]: String(index) } }])),
    );
    await Promise.all(images.map((image, index) => store.put(image.source, [`img${index}`])));
    expect((await store.list()).map((image) => image.name)).toEqual(
      images.map((_, index) => `img${index}:latest`),
    );
  });

  it("another writer's layout files on their way in make a layout in the making, anything else does not", async () => {
    const making = join(dir, 'in-the-making');
    mkdirSync(join(making, 'blobs'), { recursive: true });
    // What a concurrent put leaves while it waits for its flush: its atomic write's temporary
    // oci-layout and the index lock. Seen by a second put, that is not a foreign directory.
    writeFileSync(join(making, `.oci-layout.tmp-${process.pid}-0-abcdef`), '');
    writeFileSync(join(making, 'index.json.lock'), `${process.pid}\n`);
    expect(await directoryState(making)).toBe('empty');
    writeFileSync(join(making, 'notes.txt'), 'mine\n');
    expect(await directoryState(making)).toBe('other');
  });

  it('a name that is not in the store is NOT_FOUND naming it', async () => {
    const error = await openImage('nothere:1', { dataDir: join(dir, 'data') }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StratumError);
    expect((error as StratumError).message).toBe(
      `image "nothere:1" is not in the local store (${join(dir, 'data', 'images')})`,
    );
  });
});

describe('stratum inspect and copy', () => {
  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi
      .spyOn(process.stdout, 'write')
      .mockImplementation((chunk) => out.push(String(chunk)) > 0);
    const stderr = vi
      .spyOn(process.stderr, 'write')
      .mockImplementation((chunk) => err.push(String(chunk)) > 0);
    try {
      const code = await main(args);
      return { code, stdout: out.join(''), stderr: err.join('') };
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  }

  it('inspect zips non-empty history entries with layers and prints JSON with --json', async () => {
    const image = await makeImage(
      [
        { files: { a: 'a' }, createdBy: 'COPY a /a' },
        { files: { b: 'b' }, createdBy: 'RUN make b' },
      ],
      { emptyHistory: true },
    );
    await writeImage(image.source, `oci:${join(dir, 'cli')}:v1`);
    const { code, stdout } = await cli(['inspect', '--json', `oci:${join(dir, 'cli')}:v1`]);
    expect(code).toBe(0);
    const summary = JSON.parse(stdout) as {
      digest: string;
      platform: string;
      layers: { digest: string; createdBy: string; size: number }[];
      emptyHistory: unknown[];
    };
    expect(summary.digest).toBe(image.source.manifest.digest);
    expect(summary.platform).toBe('linux/amd64');
    expect(summary.layers.map((layer) => layer.createdBy)).toEqual(['COPY a /a', 'RUN make b']);
    expect(summary.layers.map((layer) => layer.digest)).toEqual(
      image.source.manifest.value.layers.map((layer) => layer.digest),
    );
    expect(summary.emptyHistory).toHaveLength(1);
    const text = await cli(['inspect', `oci:${join(dir, 'cli')}:v1`]);
    expect(text.stdout).toContain(`Digest:    ${image.source.manifest.digest}`);
    expect(text.stdout).toMatch(/sha256:[a-f0-9]{64}\s+\d+ B\s+RUN make b/);
  });

  it('inspect refuses an image whose history disagrees with its layers', async () => {
    const image = await makeImage([{ files: { a: 'a' } }]);
    const config = JSON.parse(image.source.config.raw.toString()) as { history: unknown[] };
    config.history.push({ created_by: 'RUN phantom' });
    const { toRaw, configShape } = await import('../../src/oci/json.js');
    const raw = toRaw(config as never, configShape);
    const { summarizeImage } = await import('../../src/oci/inspect.js');
    expect(() => summarizeImage({ ...image.source, config: raw })).toThrow(
      /2 history entries that made a layer, but the manifest has 1 layers/,
    );
  });

  it('copy writes the destination and prints the manifest digest; a bad reference is a usage error (exit 2)', async () => {
    const image = await makeImage([{ files: { a: 'a' } }]);
    await writeImage(image.source, `oci:${join(dir, 'cli-copy')}:v1`);
    const { code, stdout } = await cli([
      'copy',
      `oci:${join(dir, 'cli-copy')}:v1`,
      `oci-archive:${join(dir, 'cli-copy.tar')}:v1`,
    ]);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(image.source.manifest.digest);
    expect(
      (await copyImage(`oci-archive:${join(dir, 'cli-copy.tar')}:v1`, `oci:${join(dir, 'cli-copy-2')}`))
        .digest,
    ).toBe(image.source.manifest.digest);
    const bad = await cli(['copy', 'oci:', `oci:${join(dir, 'x')}`]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('stratum: invalid image reference "oci:": oci: needs a path\n');
    // A registry address where nothing listens: a port the kernel just handed out and took back
    // (never a fixed port such as 5000, which a developer's own registry may hold).
    const port = await closedPort();
    const registry = await cli(['copy', `oci:${join(dir, 'cli-copy')}:v1`, `docker://127.0.0.1:${port}/x:1`]);
    expect(registry.code).toBe(1);
    expect(registry.stderr).toContain('connection refused');
  });
});

/** A TCP port on 127.0.0.1 that was free a moment ago and is closed now. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => {
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}
