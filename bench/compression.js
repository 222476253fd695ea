// Layer compression: gzip-6 against zstd-3 on the ~1 GB mixed tree, writing (stratum's layer
// writer, with `tar | zstd -3 -T2` and `tar | pigz -6` as references), pushing to and pulling
// from a local docker-registry, and unpacking (stratum's extractLayerAuto). Every contender runs
// in its own process (GNU time's peak RSS is its own), in turns, BENCH_ROUNDS times; the best
// time of each is kept. Needs a Node.js with zstd in node:zlib (22.15+):
//
//   npm run build && PATH=$PWD/.ci/cache/node-v24.22.3/bin:$PATH node bench/compression.js
//   BENCH_TREE=/var/tmp/tree keeps the generated tree; BENCH_LAYER_MB=256 for a quick run;
//   BENCH_ONLY=micro only the in-process codec comparison
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateMixedTree } from './lib/mixed-tree.js';

const self = fileURLToPath(import.meta.url);

// Child modes: one operation with the library, nothing else in the process.
if (process.argv[2] === '--child') {
  const lib = await import('../dist/index.js');
  const [, , , action, a, b, c] = process.argv;
  const started = performance.now();
  let result = {};
  if (action === 'write') {
    const layer = await lib.writeDirectoryLayer(a, new lib.BlobStore(b), {
      compression: lib.parseCompression(c),
    });
    result = { compressed: layer.descriptor.size, uncompressed: layer.uncompressedSize, layer };
  } else if (action === 'unpack') {
    await lib.extractLayerAuto(createReadStream(a), b);
  } else if (action === 'push') {
    const source = await lib.openImage(a);
    await lib.pushImage(source, b);
    await source.close();
  } else if (action === 'pull') {
    await lib.pullImage(a, new lib.BlobStore(b));
  }
  process.stdout.write(JSON.stringify({ ...result, seconds: (performance.now() - started) / 1000 }));
  process.exit(0);
}

for (const tool of ['docker-registry', 'zstd', 'pigz', '/usr/bin/time']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    console.error(`bench/compression.js needs ${tool} (apt-get install docker-registry zstd pigz time)`);
    process.exit(1);
  }
}
const zlib = await import('node:zlib');
if (typeof zlib.zstdCompress !== 'function') {
  console.error(`bench/compression.js needs node:zlib's zstd (Node.js 22.15+); this is ${process.version}`);
  process.exit(1);
}

const layerMB = Number(process.env.BENCH_LAYER_MB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const work = mkdtempSync(join(tmpdir(), 'stratum-bench-compression-'));
const tree = process.env.BENCH_TREE ?? join(work, 'tree');

/** Runs a command under GNU time: wall seconds, peak RSS, and what a child printed. */
function timed(command, args) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stderr}`);
  const [seconds, kb] = result.stderr.trim().split('\n').at(-1).split(' ').map(Number);
  const printed = result.stdout.startsWith('{') ? JSON.parse(result.stdout) : {};
  return { ...printed, seconds, rssMB: kb / 1024 };
}
const child = (...args) => timed(process.execPath, [self, '--child', ...args]);

/** Runs each contender `rounds` times in turns; returns the best run of each. */
async function alternate(contenders) {
  const best = new Map();
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of contenders) {
      const result = await run();
      if (!best.has(name) || result.seconds < best.get(name).seconds) best.set(name, result);
    }
  }
  return best;
}

function row(name, result, bytes, extra = '') {
  const mbps = bytes / 1024 / 1024 / result.seconds;
  console.log(
    `  ${name.padEnd(34)} ${result.seconds.toFixed(2).padStart(7)} s ${mbps.toFixed(0).padStart(6)} MB/s ${result.rssMB
      .toFixed(0)
      .padStart(5)} MB RSS${extra}`,
  );
}

async function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRegistry() {
  const dir = mkdtempSync(join(work, 'registry-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const server = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/v2/`)).ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    host: `127.0.0.1:${port}`,
    stop: async () => {
      server.kill();
      await new Promise((r) => server.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Turns a blob store holding one layer into an OCI layout of a one-layer image. */
function layoutOf(store, layer) {
  const put = (value) => {
    const bytes = Buffer.from(JSON.stringify(value));
    const hex = spawnSync('sha256sum', { input: bytes, encoding: 'utf8' }).stdout.split(' ')[0];
    writeFileSync(join(store, 'blobs/sha256', hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const config = put({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
  });
  const manifest = put({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [layer.descriptor],
  });
  writeFileSync(join(store, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(store, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
  return `oci:${store}:latest`;
}

/**
 * In-process codec speed on 64 MB of the tree's content (its first large file), alternating, best of 3: what the
 * layer rows above spend on compression alone, without tar, hashing or disk.
 */
async function micro() {
  const { promisify } = await import('node:util');
  const sample = readFileSync(join(tree, 'large', 'blob0.bin')).subarray(0, 64 << 20);
  const level = (n) => ({ params: { [zlib.constants.ZSTD_c_compressionLevel]: n } });
  const gz = await promisify(zlib.gzip)(sample, { level: 6 });
  const zs = await promisify(zlib.zstdCompress)(sample, level(3));
  // Decompression as the readers stream it: 1 MiB input chunks, output chunks of 16 KiB (zlib's
  // default) and of 256 KiB (oci/compression.ts).
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const inflate = (make, input) =>
    pipeline(
      Readable.from(
        [...Array(Math.ceil(input.length / (1 << 20))).keys()].map((i) =>
          input.subarray(i << 20, (i + 1) << 20),
        ),
      ),
      make(),
      async (source) => {
        for await (const chunk of source) void chunk;
      },
    );
  const codecs = [
    ['gzip -6 compress', () => promisify(zlib.gzip)(sample, { level: 6 })],
    ['zstd -3 compress', () => promisify(zlib.zstdCompress)(sample, level(3))],
    ['gunzip, 16 KiB chunks', () => inflate(() => zlib.createGunzip(), gz)],
    ['gunzip, 256 KiB chunks', () => inflate(() => zlib.createGunzip({ chunkSize: 256 << 10 }), gz)],
    ['zstd decompress, 16 KiB chunks', () => inflate(() => zlib.createZstdDecompress(), zs)],
    [
      'zstd decompress, 256 KiB chunks',
      () => inflate(() => zlib.createZstdDecompress({ chunkSize: 256 << 10 }), zs),
    ],
  ];
  const best = new Map();
  for (let round = 0; round < 3; round++) {
    for (const [name, run] of codecs) {
      const started = performance.now();
      await run();
      const seconds = (performance.now() - started) / 1000;
      best.set(name, Math.min(best.get(name) ?? Infinity, seconds));
    }
  }
  console.log('node:zlib alone, 64 MB of the same content, one thread, best of 3 alternating:');
  for (const [name, seconds] of best)
    console.log(`  ${name.padEnd(34)} ${(64 / seconds).toFixed(0).padStart(6)} MB/s`);
}

try {
  let info;
  if (existsSync(join(tree, '.complete'))) {
    info = JSON.parse(readFileSync(join(tree, '.complete'), 'utf8'));
    console.log(`reusing the tree in ${tree}`);
  } else {
    console.log(`generating a ~${layerMB} MB tree in ${tree} ...`);
    info = generateMixedTree(tree, layerMB);
    writeFileSync(join(tree, '.complete'), JSON.stringify(info));
  }
  if (process.env.BENCH_ONLY === 'micro') await micro();
  else await layers(info);
} finally {
  rmSync(work, { recursive: true, force: true });
}

async function layers(info) {
  spawnSync('bash', ['-c', `tar -cf - -C ${tree} . > /dev/null`]); // warm the page cache alike
  console.log(
    `${info.files} files, ${(info.bytes / 1024 / 1024).toFixed(0)} MB; Node ${process.version}, libzstd ${process.versions.zstd}, ${rounds} rounds\n`,
  );

  // 1. Layer write. The stores of the last round are kept for push, pull and unpack.
  const stores = {};
  const write = (spec) => () => {
    if (stores[spec]) rmSync(stores[spec], { recursive: true, force: true });
    stores[spec] = mkdtempSync(join(work, `store-${spec}-`));
    return child('write', tree, stores[spec], spec);
  };
  const out = join(work, 'cli.out');
  const cli = (command) => () => ({
    ...timed('bash', ['-c', `tar -cf - -C ${tree} . | tee >(sha256sum >/dev/null) | ${command} > ${out}`]),
    compressed: Number(spawnSync('stat', ['-c', '%s', out], { encoding: 'utf8' }).stdout),
  });
  const written = await alternate([
    ['stratum gzip-6', write('gzip')],
    ['stratum zstd-3', write('zstd')],
    ['tar | zstd -3 -T2 (reference)', cli('zstd -q -3 -T2')],
    ['tar | pigz -6 (reference)', cli('pigz -6')],
  ]);
  rmSync(out, { force: true });
  const tarBytes = written.get('stratum gzip-6').uncompressed;
  console.log(
    `layer write (tar + sha256 + compress + sha256 + store), ${(tarBytes / 1024 / 1024).toFixed(0)} MB tar:`,
  );
  for (const [name, result] of written) {
    const share = `${(result.compressed / 1024 / 1024).toFixed(1).padStart(7)} MB out (${((100 * result.compressed) / tarBytes).toFixed(1)}%)`;
    row(name, result, tarBytes, `  ${share}`);
  }
  const images = [
    ['gzip-6', stores.gzip, written.get('stratum gzip-6').layer],
    ['zstd-3', stores.zstd, written.get('stratum zstd-3').layer],
  ].map(([name, store, layer]) => ({ name, layer, store, ref: layoutOf(store, layer) }));

  // 2. Push, to a fresh registry each time so that no blob is there already.
  const pushes = await alternate(
    images.map((image) => [
      `stratum push ${image.name}`,
      async () => {
        const registry = await startRegistry();
        try {
          return child('push', image.ref, `${registry.host}/bench/${image.name}:1`);
        } finally {
          await registry.stop();
        }
      },
    ]),
  );
  console.log('push to a local registry (one layer):');
  for (const image of images)
    row(
      `stratum push ${image.name}`,
      pushes.get(`stratum push ${image.name}`),
      image.layer.descriptor.size,
      '  (MB/s of compressed bytes)',
    );

  // 3. Pull into a fresh store, then unpack the layer (what a build does with a base image).
  const registry = await startRegistry();
  try {
    for (const image of images) child('push', image.ref, `${registry.host}/bench/${image.name}:1`);
    const pulls = await alternate(
      images.flatMap((image) => [
        [
          `stratum pull ${image.name}`,
          () => {
            const dest = mkdtempSync(join(work, 'pull-'));
            try {
              return child('pull', `${registry.host}/bench/${image.name}:1`, dest);
            } finally {
              rmSync(dest, { recursive: true, force: true });
            }
          },
        ],
        [
          `stratum unpack ${image.name}`,
          () => {
            const dest = mkdtempSync(join(work, 'unpack-'));
            try {
              return child(
                'unpack',
                join(image.store, 'blobs/sha256', image.layer.descriptor.digest.slice(7)),
                dest,
              );
            } finally {
              rmSync(dest, { recursive: true, force: true });
            }
          },
        ],
      ]),
    );
    console.log('pull from a local registry (one layer):');
    for (const image of images)
      row(
        `stratum pull ${image.name}`,
        pulls.get(`stratum pull ${image.name}`),
        image.layer.descriptor.size,
        '  (MB/s of compressed bytes)',
      );
    console.log('unpack (extractLayerAuto: decompress + untar to disk):');
    for (const image of images)
      row(
        `stratum unpack ${image.name}`,
        pulls.get(`stratum unpack ${image.name}`),
        tarBytes,
        '  (MB/s of tar bytes)',
      );
  } finally {
    await registry.stop();
  }
  await micro();
  console.log('\n(the machine may be shared: compare the rows, not the absolute times)');
}
