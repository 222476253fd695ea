// The per-name work of a layer on a tree of many small files: scan (readdir + lstat), the
// uncompressed layer tar (headers and small-file reads, sha256 of the tar, no gzip), extraction
// of that tar into an empty directory, and the COPY source walk of the same tree. Names are where
// names that are not UTF-8 are handled (src/oci/file-names.ts); this measures that valid names,
// ASCII and non-ASCII UTF-8, cost what they did.
//
//   npm run build && node bench/file-names.js
//   BENCH_DIST=/path/to/other/dist node bench/file-names.js   # the same against another build
//   BENCH_FILES=20000 (default) BENCH_ROUNDS=5 (default; the best round is kept)
//   BENCH_TMP=/dev/shm (default where it exists): a tmpfs, so a busy disk does not drown the
//   figures (on the shared machine, disk waits moved extraction by 3x between runs)
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.env.BENCH_DIST ?? new URL('../dist', import.meta.url).pathname);
const lib = await import(pathToFileURL(join(dist, 'index.js')).href);
const context = await import(pathToFileURL(join(dist, 'executor/context/index.js')).href);
const files = Number(process.env.BENCH_FILES ?? 20000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const tmp = process.env.BENCH_TMP ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
const work = mkdtempSync(join(tmp, 'stratum-bench-names-'));

/** `files` files of 100 bytes, 100 per directory; `suffix` makes the names non-ASCII. */
function makeTree(dir, suffix) {
  for (let d = 0; d < files / 100; d++) {
    const sub = join(dir, `dir${d}${suffix}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(sub, `file-${f}${suffix}.txt`), 'x'.repeat(100));
  }
}

async function tarOf(dir) {
  const tree = await lib.scanTree(dir);
  const diff = await lib.diffSnapshots(lib.emptySnapshot(dir), tree, dir);
  const chunks = [];
  const hash = createHash('sha256');
  for await (const chunk of lib.layerTarStream(diff)) {
    hash.update(chunk);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Best wall time and best CPU time (user + system of this process) over the rounds. */
async function best(label, run) {
  let wall = Infinity;
  let cpu = Infinity;
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    const usage = process.cpuUsage();
    await run(round);
    const used = process.cpuUsage(usage);
    wall = Math.min(wall, performance.now() - started);
    cpu = Math.min(cpu, (used.user + used.system) / 1000);
  }
  console.log(
    `  ${label.padEnd(34)} ${wall.toFixed(0).padStart(6)} ms wall ${cpu.toFixed(0).padStart(6)} ms CPU`,
  );
}

console.log(`stratum from ${dist}, ${files} files in ${work}, best of ${rounds}`);
for (const [kind, suffix] of [
  ['ASCII names', ''],
  ['UTF-8 names (é)', '-é'],
]) {
  const dir = join(work, `tree${suffix === '' ? '' : '-utf8'}`);
  makeTree(dir, suffix);
  console.log(kind);
  await best('scanTree', () => lib.scanTree(dir));
  await best('scan + diff + uncompressed tar', () => tarOf(dir));
  const tar = await tarOf(dir);
  await best('extractLayer (uncompressed)', async (round) => {
    const target = join(work, `x-${suffix === '' ? 'a' : 'u'}-${round}`);
    mkdirSync(target);
    const { Readable } = await import('node:stream');
    await lib.extractLayer(Readable.from([tar]), target);
  });
  await best('COPY source walk (planCopy)', () =>
    context.planCopy({
      sources: ['.'],
      dest: '/d/',
      workdir: '/',
      root: { kind: 'rootfs', dir },
      excludes: [],
      parents: false,
    }),
  );
}
rmSync(work, { recursive: true, force: true });
