// Layer write throughput and peak RSS: stratum's one-pass writer against `tar -c | gzip -6` and
// `tar -c | pigz -6` on the same generated tree, a 2 GB sparse-file layer for the memory bound,
// and micro-comparisons of node:zlib vs pako and node:crypto vs @noble/hashes.
//
//   npm run build && node bench/layer-write.js
//   BENCH_LAYER_MB=200 node bench/layer-write.js      # smaller tree for a quick run
//   BENCH_BIG_GB=2 (default) sets the sparse file size; BENCH_BIG_GB=0 skips it
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  readFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  closeSync,
  openSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const self = fileURLToPath(import.meta.url);

// Child mode: write one layer and report time and peak RSS of this process alone.
if (process.argv[2] === '--child') {
  const { BlobStore, writeDirectoryLayer } = await import('../dist/index.js');
  const [, , , dir, storeDir, threads] = process.argv;
  const started = performance.now();
  const layer = await writeDirectoryLayer(dir, new BlobStore(storeDir), {
    ...(threads !== undefined ? { compressionThreads: Number(threads) } : {}),
  });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    JSON.stringify({
      seconds,
      maxRssMB: process.resourceUsage().maxRSS / 1024,
      compressed: layer.descriptor.size,
      uncompressed: layer.uncompressedSize,
    }),
  );
  process.exit(0);
}

const layerMB = Number(process.env.BENCH_LAYER_MB ?? 1024);
const bigGB = Number(process.env.BENCH_BIG_GB ?? 2);
const work = mkdtempSync(join(tmpdir(), 'stratum-bench-layer-'));
// BENCH_TREE=/some/dir keeps the generated tree there between runs (generated if missing).
const keptTree = process.env.BENCH_TREE;
const tree = keptTree ?? join(work, 'tree');

/**
 * Content that compresses roughly like a userland (about 2.5:1 with gzip -6): words from a small
 * vocabulary mixed with runs of random bytes. Files take slices at varying offsets of a 16 MB
 * corpus, so gzip's 32 KB window never sees an easy repeat.
 */
function makeCorpus(bytes) {
  const words = 'the layer tar file gzip sha256 digest stream root etc usr lib bin share doc include'.split(
    ' ',
  );
  const out = Buffer.allocUnsafe(bytes);
  let offset = 0;
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  while (offset < bytes) {
    if (rand() % 60 === 0) {
      const n = Math.min(bytes - offset, 8 + (rand() % 40));
      randomBytes(n).copy(out, offset);
      offset += n;
    } else {
      const word = words[rand() % words.length];
      offset += out.write(`${word} `, offset);
    }
  }
  return out;
}

function generateTree() {
  const corpus = makeCorpus(16 * 1024 * 1024);
  const target = layerMB * 1024 * 1024;
  let written = 0;
  let files = 0;
  let cursor = 0;
  const slice = (size) => {
    if (cursor + size > corpus.length) cursor = (cursor * 7 + 4093) % (corpus.length - size);
    const part = corpus.subarray(cursor, cursor + size);
    cursor += size + 511;
    return part;
  };
  // 30% of the bytes in small files (1-64 KB, 100 per directory), the rest in large ones.
  for (let d = 0; written < target * 0.3; d++) {
    const dir = join(tree, 'small', `d${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100 && written < target * 0.3; f++) {
      const size = 1024 + ((d * 131 + f * 977) % (63 * 1024));
      writeFileSync(join(dir, `f${f}.txt`), slice(size));
      written += size;
      files++;
    }
  }
  mkdirSync(join(tree, 'large'), { recursive: true });
  for (let i = 0; written < target; i++) {
    const size = Math.min(target - written, 64 * 1024 * 1024);
    const fd = openSync(join(tree, 'large', `blob${i}.bin`), 'w');
    for (let done = 0; done < size;) {
      const chunk = slice(Math.min(4 * 1024 * 1024, size - done));
      writeFileSync(fd, chunk);
      done += chunk.length;
    }
    closeSync(fd);
    written += size;
    files++;
  }
  return { bytes: written, files };
}

function runChild(dir, threads) {
  const storeDir = mkdtempSync(join(work, 'store-'));
  const args = [self, '--child', dir, storeDir, ...(threads !== undefined ? [String(threads)] : [])];
  const result = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  rmSync(storeDir, { recursive: true, force: true });
  if (result.status !== 0) throw new Error(`child failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** Runs a shell pipeline under GNU time: wall seconds and the largest process's peak RSS. */
function runShell(command) {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', 'bash', '-c', command], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr}`);
  const [seconds, kb] = result.stderr.trim().split('\n').pop().split(' ').map(Number);
  return { seconds, maxRssMB: kb / 1024 };
}

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

function row(name, seconds, bytes, rssMB, compressed) {
  const mbps = bytes / 1024 / 1024 / seconds;
  console.log(
    `${name.padEnd(30)} ${seconds.toFixed(2).padStart(7)} s ${mbps.toFixed(1).padStart(8)} MB/s ${rssMB
      .toFixed(0)
      .padStart(6)} MB RSS ${(compressed / 1024 / 1024).toFixed(1).padStart(8)} MB out`,
  );
}

try {
  let bytes;
  let files;
  if (keptTree !== undefined && existsSync(join(keptTree, '.complete'))) {
    ({ bytes, files } = JSON.parse(readFileSync(join(keptTree, '.complete'), 'utf8')));
    console.log(`reusing the tree in ${tree}`);
  } else {
    console.log(`generating a ~${layerMB} MB tree in ${tree} ...`);
    ({ bytes, files } = generateTree());
    if (keptTree !== undefined) writeFileSync(join(keptTree, '.complete'), JSON.stringify({ bytes, files }));
  }
  // Warm the page cache for every contender alike.
  execFileSync('bash', ['-c', `tar -cf - -C ${tree} . > /dev/null`]);
  console.log(`${files} files, ${(bytes / 1024 / 1024).toFixed(0)} MB of content\n`);
  console.log('layer write (tar + sha256 + gzip -6 + sha256 + store):');

  // Contenders run in turns, BENCH_ROUNDS times (default 2), and each one's best time is kept:
  // the figures are for comparing, and a shared machine's noise only ever slows a run down.
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const out = join(work, 'out.tar.gz');
  const shell = (command) => () => ({ ...runShell(command), compressed: statSync(out).size });
  const contenders = [
    ['stratum writeDirectoryLayer', () => runChild(tree)],
    ['stratum, 2 gzip blocks in flight', () => runChild(tree, 2)],
    ['tar | gzip -6', shell(`tar -cf - -C ${tree} . | tee >(sha256sum >/dev/null) | gzip -6 > ${out}`)],
    ...(has('pigz')
      ? [['tar | pigz -6', shell(`tar -cf - -C ${tree} . | tee >(sha256sum >/dev/null) | pigz -6 > ${out}`)]]
      : []),
  ];
  const best = new Map();
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of contenders) {
      const result = run();
      const previous = best.get(name);
      if (previous === undefined || result.seconds < previous.seconds) best.set(name, result);
    }
  }
  const tarBytes = best.get('stratum writeDirectoryLayer').uncompressed;
  for (const [name] of contenders) {
    const result = best.get(name);
    row(name, result.seconds, tarBytes, result.maxRssMB, result.compressed);
  }
  rmSync(out, { force: true });
  console.log(
    '(the shell pipelines hash the tar with sha256sum via tee, as stratum hashes it for the diff_id)',
  );

  if (bigGB > 0) {
    const bigDir = join(work, 'big');
    mkdirSync(bigDir);
    const bigFile = join(bigDir, 'sparse.bin');
    closeSync(openSync(bigFile, 'w'));
    truncateSync(bigFile, bigGB * 1024 * 1024 * 1024);
    console.log(`\n${bigGB} GB sparse file as one layer (memory bound: peak RSS must stay under 150 MB):`);
    const big = runChild(bigDir);
    row('stratum writeDirectoryLayer', big.seconds, big.uncompressed, big.maxRssMB, big.compressed);
  }

  console.log('\nmicro: 64 MB of corpus, one call each');
  const { default: pako } = await import('pako');
  const { sha256 } = await import('@noble/hashes/sha2.js');
  const sample = makeCorpus(64 * 1024 * 1024);
  const time = (name, fn) => {
    const started = performance.now();
    fn();
    const seconds = (performance.now() - started) / 1000;
    console.log(`${name.padEnd(30)} ${(64 / seconds).toFixed(1).padStart(8)} MB/s`);
  };
  time('node:zlib gzip -6', () => gzipSync(sample, { level: 6 }));
  time('pako gzip -6', () => pako.gzip(sample, { level: 6 }));
  time('node:crypto sha256', () => createHash('sha256').update(sample).digest());
  time('@noble/hashes sha256', () => sha256(sample));
} finally {
  rmSync(work, { recursive: true, force: true });
}
