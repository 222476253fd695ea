// Layer write throughput and peak RSS: stratum's one-pass writer against `tar -c | gzip -6` and
// `tar -c | pigz -6` on the same generated tree, a 2 GB sparse-file layer for the memory bound,
// and micro-comparisons of node:zlib vs pako and node:crypto vs @noble/hashes.
//
//   npm run build && node bench/layer-write.js
//   BENCH_LAYER_MB=200 node bench/layer-write.js      # smaller tree for a quick run
//   BENCH_BIG_GB=2 (default) sets the sparse file size; BENCH_BIG_GB=0 skips it
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
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
import { generateMixedTree, makeCorpus } from './lib/mixed-tree.js';
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
    ({ bytes, files } = generateMixedTree(tree, layerMB));
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
