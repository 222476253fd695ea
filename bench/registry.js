// Registry push and pull: stratum against `skopeo copy` on the same 1 GB image (4 incompressible
// tar+gzip layers), to and from a local docker-registry on 127.0.0.1, each run in its own
// process so that peak RSS (GNU time's %M) is that tool's alone. A fresh registry per push, so
// neither tool finds the other's blobs.
//
//   npm run build && node bench/registry.js
//   BENCH_REGISTRY_MB=200 node bench/registry.js     # smaller image for a quick run
//   BENCH_RUNS=3 (default 1) repeats each measurement and keeps the best
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';

const self = fileURLToPath(import.meta.url);

// Child mode: one push or pull with the library, nothing else in the process.
if (process.argv[2] === '--child') {
  const { BlobStore, pullImage, pushImage, openImage } = await import('../dist/index.js');
  const [, , , action, a, b] = process.argv;
  // BENCH_CONCURRENCY tries another number of blobs in flight (default: the library's).
  const concurrency = process.env.BENCH_CONCURRENCY
    ? { concurrency: Number(process.env.BENCH_CONCURRENCY) }
    : {};
  if (action === 'push') {
    const source = await openImage(a);
    await pushImage(source, b, concurrency);
    await source.close();
  } else {
    await pullImage(a, new BlobStore(b), concurrency);
  }
  process.exit(0);
}

const totalMB = Number(process.env.BENCH_REGISTRY_MB ?? 1024);
const layerCount = 4;
const runs = Number(process.env.BENCH_RUNS ?? 1);

for (const tool of ['docker-registry', 'skopeo', '/usr/bin/time']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    console.error(`bench/registry.js needs ${tool} (apt-get install docker-registry skopeo time)`);
    process.exit(1);
  }
}

const work = mkdtempSync(join(tmpdir(), 'stratum-bench-registry-'));
const layout = join(work, 'layout');

function sha256Hex(data) {
  return createHash('sha256').update(data).digest('hex');
}

/** One uncompressed tar layer holding one file of random bytes; returns its descriptor. */
async function writeLayer(index, bytes) {
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const tmp = join(layout, `layer-${index}.tmp`);
  const hash = createHash('sha256');
  let size = 0;
  const header = Buffer.alloc(512);
  header.write(`data/layer-${index}.bin`, 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${bytes.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padding = (512 - (bytes % 512)) % 512;
  async function* chunks() {
    yield header;
    for (let left = bytes; left > 0; left -= 1 << 20) yield randomBytes(Math.min(left, 1 << 20));
    yield Buffer.alloc(padding + 1024);
  }
  const counter = new Transform({
    transform(chunk, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const diffHash = createHash('sha256');
  const tarHasher = new Transform({
    transform(chunk, _enc, cb) {
      diffHash.update(chunk);
      cb(null, chunk);
    },
  });
  // gzip with stored blocks (level 0): a real tar+gzip layer that costs no CPU to make, so that no
  // tool has a reason to recompress it (skopeo gzips uncompressed layers for docker:// targets).
  await pipeline(chunks(), tarHasher, createGzip({ level: 0 }), counter, createWriteStream(tmp));
  const digest = `sha256:${hash.digest('hex')}`;
  execFileSync('mv', [tmp, join(layout, 'blobs', 'sha256', digest.slice(7))]);
  return {
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest,
    size,
    diffId: `sha256:${diffHash.digest('hex')}`,
  };
}

function putJson(value) {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = `sha256:${sha256Hex(bytes)}`;
  writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), bytes);
  return { digest, size: bytes.length };
}

async function makeImage() {
  const layers = [];
  for (let i = 0; i < layerCount; i++)
    layers.push(await writeLayer(i, Math.floor((totalMB * 1024 * 1024) / layerCount)));
  const config = putJson({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  });
  const manifest = putJson({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  writeFileSync(
    join(layout, 'index.json'),
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
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
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
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (response.ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    host: `127.0.0.1:${port}`,
    stop: async () => {
      child.kill();
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a command under GNU time; returns wall seconds and peak RSS in MB. */
function timed(command, args) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stderr}`);
  const [seconds, kb] = result.stderr.trim().split('\n').at(-1).split(' ');
  return { seconds: Number(seconds), rssMB: Number(kb) / 1024 };
}

function best(results) {
  return results.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function measure(label, fn) {
  const results = [];
  for (let i = 0; i < runs; i++) results.push(await fn());
  const result = best(results);
  const mbps = totalMB / result.seconds;
  console.log(
    `${label.padEnd(28)} ${result.seconds.toFixed(2).padStart(7)} s  ${mbps.toFixed(0).padStart(5)} MB/s  peak RSS ${result.rssMB.toFixed(0).padStart(5)} MB`,
  );
  return result;
}

try {
  console.log(`generating a ${totalMB} MB image (${layerCount} random tar+gzip layers) ...`);
  await makeImage();
  const stratumCli = ['node', [self, '--child']];

  const pushWith = async (tool) => {
    const registry = await startRegistry();
    try {
      return tool === 'stratum'
        ? timed(stratumCli[0], [
            ...stratumCli[1],
            'push',
            `oci:${layout}:latest`,
            `${registry.host}/bench/image:1`,
          ])
        : timed('skopeo', [
            'copy',
            '-q',
            '--dest-tls-verify=false',
            `oci:${layout}:latest`,
            `docker://${registry.host}/bench/image:1`,
          ]);
    } finally {
      await registry.stop();
    }
  };
  console.log(`push (${totalMB} MB, ${layerCount} layers)`);
  await measure('  stratum push', () => pushWith('stratum'));
  await measure('  skopeo copy oci: → docker://', () => pushWith('skopeo'));

  const registry = await startRegistry();
  try {
    timed('skopeo', [
      'copy',
      '-q',
      '--dest-tls-verify=false',
      `oci:${layout}:latest`,
      `docker://${registry.host}/bench/image:1`,
    ]);
    const pullWith = (tool) => {
      const dest = mkdtempSync(join(work, 'pull-'));
      try {
        return tool === 'stratum'
          ? timed(stratumCli[0], [...stratumCli[1], 'pull', `${registry.host}/bench/image:1`, dest])
          : timed('skopeo', [
              'copy',
              '-q',
              '--src-tls-verify=false',
              `docker://${registry.host}/bench/image:1`,
              `oci:${dest}:latest`,
            ]);
      } finally {
        rmSync(dest, { recursive: true, force: true });
      }
    };
    console.log(`pull (${totalMB} MB, ${layerCount} layers)`);
    await measure('  stratum pull', () => pullWith('stratum'));
    await measure('  skopeo copy docker:// → oci:', () => pullWith('skopeo'));
  } finally {
    await registry.stop();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
