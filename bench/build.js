// Cold builds of the same Dockerfiles with stratum, Docker's classic builder and buildah (and
// BuildKit where buildx is installed; it is not on this machine), from the same busybox base.
// Wall time and peak RSS per builder, including writing the image out. Never asserts timings.
//
//   npm run build && node bench/build.js
//   BENCH_FILES=5000 BENCH_CONTEXT_FILES=300 BENCH_BIG_MB=50 node bench/build.js   # quick run
//   BENCH_TOOLS=stratum,docker (default stratum,docker,buildah)   BENCH_KEEP=1 keeps the temp dir
//   BENCH_WORKLOADS=files,delete,copy,big,many (default: all)
//   BENCH_SETTLE_S=65 waits that long after the sync before each timed build (see below)
//
// Workloads:
//   files   RUN that creates BENCH_FILES (20,000) small files
//   delete  the same Dockerfile plus a RUN deleting half of them, with the first RUN cached from
//           the `files` build: the time is what the second step and writing the image cost
//   copy    COPY of a BENCH_CONTEXT_FILES (1,000) file context
//   big     RUN writing a BENCH_BIG_MB (300) MB file of random bytes
//   many    W-many, the four in ONE Dockerfile, cold: RUN creating the files, RUN deleting half,
//           COPY of the context, RUN writing the big file (BuildKit: its cache pruned first)
//
// Before each timed build the disk is settled with sync(1), untimed: what the previous build
// left for the kernel to write back (a saved 300 MB tar, an unsynced upperdir) otherwise slowed
// the next build's file creation by seconds on this VM, whichever builder came next.
// BENCH_SETTLE_S=65 also waits that long after it: ext4 without a journal (this VM's root
// filesystem) passes over every inode freed in the last 60 s of a group on each create, so a
// build right after the previous run's cleanup or BuildKit's prune (tens of thousands of files)
// makes its own files several times slower (bench/README.md, "Build").
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildahBuild, buildkitBuild, dockerBuild, stratumBuild } from './lib/builders.js';
import { describeMaterialize, measureMaterialize } from './lib/materialize.js';
import {
  BASE_NAME,
  cleanWorld,
  detectTools,
  dockerdPid,
  fmtMB,
  fmtS,
  machineNote,
  makeWorld,
  procMemory,
  stratumEnv,
  table,
} from './lib/harness.js';

const files = Number(process.env.BENCH_FILES ?? 20000);
const contextFiles = Number(process.env.BENCH_CONTEXT_FILES ?? 1000);
const bigMB = Number(process.env.BENCH_BIG_MB ?? 300);
const selected = (process.env.BENCH_WORKLOADS ?? 'files,delete,copy,big,many').split(',');

const tools = detectTools();
if (!tools.stratum) {
  console.error('bench/build.js: run `npm run build` first (dist/ is missing)');
  process.exit(1);
}
console.log(`machine: ${machineNote()}`);
console.log(
  `builders: stratum; docker classic ${tools.docker ? tools.dockerVersion : 'not installed'}; buildah ${tools.buildah ? tools.buildahVersion : 'not installed'}; BuildKit ${tools.buildkit ? `${tools.dockerVersion} (DOCKER_BUILDKIT=1)` : 'not installed'}`,
);

const world = makeWorld('stratum-bench-build', tools);
const dockerd = dockerdPid();
const dockerdBefore = tools.docker && dockerd !== undefined ? procMemory(dockerd) : undefined;

function context(name, dockerfileText, contextFileCount = 0) {
  const dir = join(world.dir, `ctx-${name}`);
  mkdirSync(dir, { recursive: true });
  // Ten directories of small, distinct files (as a source tree would be).
  for (let i = 0; i < contextFileCount; i++) {
    const sub = join(dir, 'src', `d${i % 10}`);
    if (i < 10) mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `file-${i}.txt`), `file ${i}\n${'x'.repeat(200 + (i % 300))}\n`);
  }
  const dockerfile = join(world.dir, `${name}.Dockerfile`);
  writeFileSync(dockerfile, dockerfileText);
  return { context: dir, dockerfile };
}

// busybox sh: a builtin loop, so the step's own cost is the same for every builder.
const createRun = `RUN mkdir /data && cd /data && i=0 && while [ $i -lt ${files} ]; do echo "file $i" > f$i; i=$((i+1)); done`;
// f*[02468]: the files whose number ends in an even digit, half of them.
const deleteRun = 'RUN cd /data && rm f*[02468]';
const bigRun = `RUN dd if=/dev/urandom of=/big bs=1M count=${bigMB} 2>/dev/null`;
const workloads = [
  {
    name: 'files',
    label: `RUN creating ${files.toLocaleString('en')} files`,
    ...context('files', `FROM ${BASE_NAME}\n${createRun}\n`),
    cold: true,
  },
  {
    name: 'delete',
    label: `+ RUN deleting half (first RUN cached)`,
    ...context('delete', `FROM ${BASE_NAME}\n${createRun}\n${deleteRun}\n`),
    cold: false,
  },
  {
    name: 'copy',
    label: `COPY of ${contextFiles.toLocaleString('en')} files`,
    ...context('copy', `FROM ${BASE_NAME}\nCOPY src /app/src\n`, contextFiles),
    cold: true,
  },
  {
    name: 'big',
    label: `RUN writing a ${bigMB} MB file`,
    ...context('big', `FROM ${BASE_NAME}\n${bigRun}\n`),
    cold: true,
  },
  {
    name: 'many',
    label: `W-many: ${files.toLocaleString('en')} files, delete half, COPY ${contextFiles.toLocaleString('en')}, ${bigMB} MB`,
    ...context(
      'many',
      `FROM ${BASE_NAME}\n${createRun}\n${deleteRun}\nCOPY src /app/src\n${bigRun}\n`,
      contextFiles,
    ),
    cold: true,
    pruneBuildKit: true,
  },
].filter((workload) => selected.includes(workload.name));

const settleSeconds = Number(process.env.BENCH_SETTLE_S ?? 0);

/** Untimed: lets the kernel write back what earlier builds left dirty (see the header). */
function settleDisk() {
  spawnSync('sync', { stdio: 'ignore' });
  if (settleSeconds > 0) spawnSync('sleep', [String(settleSeconds)], { stdio: 'ignore' });
}

// One cache per builder for the whole run: `files` fills it cold, `delete` reuses it.
const stratumCache = world.fresh('stratum-cache');
const results = [];
try {
  for (const workload of workloads) {
    const spec = { context: workload.context, dockerfile: workload.dockerfile, noCache: workload.cold };
    // A cold workload gets a fresh stratum cache, except `files`, whose cache `delete` needs.
    const cacheDir = workload.cold && workload.name !== 'files' ? world.fresh('stratum-cache') : stratumCache;
    if (workload.name === 'delete' && !selected.includes('files')) {
      // `delete` measures a build whose first RUN is cached: fill each cache first, untimed.
      const files1 = context('files', `FROM ${BASE_NAME}\n${createRun}\n`);
      await stratumBuild(world, { ...files1, cacheDir: stratumCache });
      if (tools.docker) await dockerBuild(world, { ...files1, noCache: true });
      if (tools.buildah) await buildahBuild(world, { ...files1, noCache: true });
      if (tools.buildkit) await buildkitBuild(world, { ...files1, noCache: true });
    }
    process.stdout.write(`${workload.name}: stratum`);
    // stratum's cold builds use an empty cache dir rather than --no-cache, so that the cache is
    // filled as the others' is (their --no-cache still records layers for later builds).
    settleDisk();
    const row = { workload, stratum: await stratumBuild(world, { ...spec, noCache: false, cacheDir }) };
    if (tools.docker) {
      process.stdout.write(', docker');
      settleDisk();
      row.docker = await dockerBuild(world, spec);
    }
    if (tools.buildah) {
      process.stdout.write(', buildah');
      settleDisk();
      row.buildah = await buildahBuild(world, spec);
    }
    if (tools.buildkit) {
      process.stdout.write(', buildkit');
      row.buildkit = await buildkitBuild(world, {
        ...spec,
        prune: workload.pruneBuildKit === true,
        beforeTimed: settleDisk,
      });
    }
    console.log();
    if (workload.name === 'delete' && row.stratum.outputRef !== undefined) {
      // The delete step's own cost in stratum starts with re-extracting the cached first layer.
      row.materialize = measureMaterialize(
        row.stratum.outputRef,
        world.fresh('materialize'),
        stratumEnv(world),
      );
    }
    results.push(row);
  }
} finally {
  cleanWorld(world, tools);
}

const dockerdAfter = tools.docker && dockerd !== undefined ? procMemory(dockerd) : undefined;
const ratio = (other, base) => (other === undefined ? '–' : `${(other.seconds / base.seconds).toFixed(2)}×`);
console.log();
table(
  [
    'workload',
    'stratum',
    'docker classic (client RSS; dockerd peak RSS)',
    'buildah',
    'BuildKit (client RSS)',
    'docker ÷ stratum',
    'buildah ÷ stratum',
    'BuildKit ÷ stratum',
  ],
  results.map((row) => [
    row.workload.label,
    `${fmtS(row.stratum.seconds)}, ${fmtMB(row.stratum.rssMB)}`,
    row.docker === undefined
      ? 'not installed'
      : `${fmtS(row.docker.seconds)} (build ${fmtS(row.docker.parts[0])} + save ${fmtS(row.docker.parts[1])}), ${fmtMB(row.docker.rssMB)}; ${fmtMB(row.docker.sampledMB)}`,
    row.buildah === undefined
      ? 'not installed'
      : `${fmtS(row.buildah.seconds)} (bud ${fmtS(row.buildah.parts[0])} + push ${fmtS(row.buildah.parts[1])}), ${fmtMB(row.buildah.rssMB)}`,
    row.buildkit === undefined
      ? 'not installed'
      : `${fmtS(row.buildkit.seconds)} (build ${fmtS(row.buildkit.parts[0])} + save ${fmtS(row.buildkit.parts[1])}), ${fmtMB(row.buildkit.rssMB)}`,
    ratio(row.docker, row.stratum),
    ratio(row.buildah, row.stratum),
    ratio(row.buildkit, row.stratum),
  ]),
);
console.log('\nstratum step times (from --progress plain):');
for (const row of results) {
  const steps = row.stratum.steps.map((step) => `${step.outcome.toLowerCase()} ${step.seconds.toFixed(2)} s`);
  console.log(`  ${row.workload.name}: ${steps.join(', ')}; total ${fmtS(row.stratum.seconds)}`);
}
for (const row of results) {
  if (row.materialize !== undefined)
    console.log(
      `  ${row.workload.name}: before its RUN, stratum materialises the rootfs: ${describeMaterialize(row.materialize)}`,
    );
}
if (dockerdBefore !== undefined && dockerdAfter !== undefined) {
  console.log(
    `\ndockerd VmHWM ${fmtMB(dockerdBefore.hwm / 1024)} before, ${fmtMB(dockerdAfter.hwm / 1024)} after (lifetime peak); RSS ${fmtMB(dockerdBefore.rss / 1024)} → ${fmtMB(dockerdAfter.rss / 1024)}`,
  );
}
