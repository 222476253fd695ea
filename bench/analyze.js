// Times stratum's layer model on a synthetic image: a base layer of many small files plus a big
// file, then steps that each touch a few paths. Prints applyLayers, analyze and diff timings.
// Usage: npm run build && node bench/analyze.js [files=50000] [steps=20] [bigMiB=256]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { analyzeImage } from '../dist/analyze/analyze.js';
import { applyLayers } from '../dist/analyze/apply.js';
import { diffImages } from '../dist/analyze/diff.js';
import { BlobStore } from '../dist/oci/blob-store.js';
import { openImage, writeImage } from '../dist/transport/images.js';

const files = Number(process.argv[2] ?? 50_000);
const steps = Number(process.argv[3] ?? 20);
const bigMiB = Number(process.argv[4] ?? 256);
const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-analyze-'));

/** Streams a layer tar through gzip into a blob store; returns descriptor and diff_id. */
async function layer(store, fill) {
  const pack = tar.pack();
  const raw = createHash('sha256');
  const gz = createGzip({ level: 1 });
  async function* hashing(source) {
    for await (const chunk of source) {
      raw.update(chunk);
      yield chunk;
    }
  }
  const [, blob] = await Promise.all([
    (async () => {
      const feeding = pipeline(pack, hashing, gz);
      await fill(pack);
      pack.finalize();
      await feeding;
    })(),
    store.putStream(gz),
  ]);
  return {
    descriptor: {
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: blob.digest,
      size: blob.size,
    },
    diffId: `sha256:${raw.digest('hex')}`,
  };
}

function entry(pack, header, body) {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, body, (error) => (error ? reject(error) : resolve()));
    void sink;
  });
}

async function bigEntry(pack, name, size) {
  await new Promise((resolve, reject) => {
    const sink = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) }, (error) =>
      error ? reject(error) : resolve(),
    );
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let left = size;
    const write = () => {
      while (left > 0) {
        const part = chunk.subarray(0, Math.min(chunk.length, left));
        left -= part.length;
        if (!sink.write(part)) return sink.once('drain', write);
      }
      sink.end();
    };
    write();
  });
}

const store = new BlobStore(join(dir, 'blobs-root'));
const layers = [];
const history = [];
let t = performance.now();
layers.push(
  await layer(store, async (pack) => {
    for (let i = 0; i < files; i++)
      await entry(
        pack,
        { name: `usr/share/d${i % 500}/f${i}`, mode: 0o644, mtime: new Date(0) },
        `file ${i}\n`,
      );
    await bigEntry(pack, 'opt/big.bin', bigMiB * 1024 * 1024);
  }),
);
history.push({ created_by: 'base' });
for (let s = 1; s < steps; s++) {
  layers.push(
    await layer(store, async (pack) => {
      for (let i = 0; i < 100; i++)
        await entry(
          pack,
          { name: `usr/share/d${i}/f${s * 100 + i}`, mode: 0o600, mtime: new Date(0) },
          `changed ${s}\n`,
        );
      await entry(pack, { name: `usr/share/d${s}/.wh.f${s}`, mode: 0, mtime: new Date(0) }, '');
    }),
  );
  history.push({ created_by: `RUN step ${s}` });
}
const config = Buffer.from(
  JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history,
  }),
);
const configBlob = await store.putStream(Readable.from([config]));
const manifest = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: {
    mediaType: 'application/vnd.oci.image.config.v1+json',
    digest: configBlob.digest,
    size: configBlob.size,
  },
  layers: layers.map((l) => l.descriptor),
};
const manifestBytes = Buffer.from(JSON.stringify(manifest));
const manifestBlob = await store.putStream(Readable.from([manifestBytes]));
const source = {
  name: 'bench',
  descriptor: { mediaType: manifest.mediaType, digest: manifestBlob.digest, size: manifestBlob.size },
  manifest: { value: manifest, raw: manifestBytes, digest: manifestBlob.digest },
  config: { value: JSON.parse(config.toString()), raw: config, digest: configBlob.digest },
  openBlob: (descriptor) => Promise.resolve(store.read(descriptor.digest, { verify: true })),
  close: async () => {},
};
await writeImage(source, `oci:${join(dir, 'layout')}:bench`);
console.log(
  `image: ${files} files + ${bigMiB} MiB file, ${steps} steps (made in ${((performance.now() - t) / 1000).toFixed(1)} s)`,
);

const image = await openImage(`oci:${join(dir, 'layout')}:bench`);
const time = async (label, work) => {
  const start = performance.now();
  const rss = process.memoryUsage().rss;
  await work();
  console.log(
    `${label.padEnd(22)} ${((performance.now() - start) / 1000).toFixed(2).padStart(7)} s   rss +${((process.memoryUsage().rss - rss) / 1e6).toFixed(0)} MB`,
  );
};
await time('applyLayers', () => applyLayers(image));
await time('analyzeImage', () => analyzeImage(image));
await time('diffImages (A vs A)', () => diffImages(image, image));
const tarStart = performance.now();
const { execFileSync } = await import('node:child_process');
for (const l of layers)
  execFileSync('sh', [
    '-c',
    `gzip -dc < ${join(dir, 'layout', 'blobs', 'sha256', l.descriptor.digest.slice(7))} | sha256sum > /dev/null`,
  ]);
console.log(
  `${'peer: gzip -dc | sha256sum'.padEnd(22)} ${((performance.now() - tarStart) / 1000).toFixed(2).padStart(7)} s   (decompress + hash every layer once)`,
);
await image.close();
rmSync(dir, { recursive: true, force: true });
