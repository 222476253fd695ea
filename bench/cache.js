// Rebuilds with a warm cache: a no-op rebuild (everything cached) and a rebuild after one source
// file used by the last COPY was touched (mtime only) or changed (content), with stratum,
// Docker's classic builder and buildah --layers on the same Dockerfile, each writing the image
// out (stratum --output oci:, `docker save -o`, `buildah push oci:`). Then where stratum's
// no-op rebuild spends its time: Node start-up, loading the modules, parsing, cache lookups,
// writing the output, from an in-process run with timestamps and a --cpu-prof of the CLI.
// Never asserts timings.
//
//   npm run build && node bench/cache.js
//   BENCH_RUNS=5 (default) rebuilds per row, the median is shown (min in brackets)
//   BENCH_TOOLS=stratum,docker,buildah   BENCH_KEEP=1 keeps the temp dir
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildahBuild, buildkitBuild, dockerBuild, stratumBuild } from './lib/builders.js';
import { printSummary, summarizeProfile } from './lib/cpuprofile.js';
import { describeMaterialize, measureMaterialize } from './lib/materialize.js';
import {
  BASE_NAME,
  cleanWorld,
  detectTools,
  fmtMB,
  fmtS,
  machineNote,
  makeWorld,
  median,
  repoRoot,
  stratumBin,
  stratumEnv,
  table,
  timed,
} from './lib/harness.js';

const self = fileURLToPath(import.meta.url);

// Child mode: one no-op rebuild in this process through the library, with a timestamp at each
// phase boundary (ms since the process started). Prints one JSON line.
if (process.argv[2] === '--phases') {
  const [, , , contextDir, dockerfilePath, cacheDir, dataDir, output] = process.argv;
  const marks = { nodeReady: performance.now() };
  const lib = await import('../dist/index.js');
  marks.imported = performance.now();
  const dockerfile = readFileSync(dockerfilePath);
  lib.parseDockerfile(dockerfile, { file: dockerfilePath });
  marks.parsed = performance.now();
  const steps = [];
  await lib.buildImage({
    contextDir,
    dockerfilePath,
    dockerfile,
    dataDir,
    cacheDir,
    network: 'none',
    outputs: output === '-' ? [] : [output],
    onEvent: (event) => {
      if (event.kind === 'stage-start') marks.stageStart = performance.now();
      if (event.kind === 'step-end') steps.push({ at: performance.now(), outcome: event.outcome });
    },
  });
  marks.done = performance.now();
  console.log(JSON.stringify({ marks, steps, bootstrap: performance.nodeTiming.bootstrapComplete }));
  process.exit(0);
}

const runs = Number(process.env.BENCH_RUNS ?? 5);
const depFiles = Number(process.env.BENCH_DEP_FILES ?? 300);
const srcFiles = Number(process.env.BENCH_SRC_FILES ?? 100);
const genFiles = Number(process.env.BENCH_GEN_FILES ?? 2000);

const tools = detectTools();
if (!tools.stratum) {
  console.error('bench/cache.js: run `npm run build` first (dist/ is missing)');
  process.exit(1);
}
console.log(`machine: ${machineNote()}`);
console.log(
  `builders: stratum; docker classic ${tools.docker ? tools.dockerVersion : 'not installed'}; buildah ${tools.buildah ? tools.buildahVersion : 'not installed'}; BuildKit ${tools.buildkit ? `${tools.dockerVersion} (DOCKER_BUILDKIT=1)` : 'not installed'}`,
);

const world = makeWorld('stratum-bench-cache', tools);
const contextDir = join(world.dir, 'ctx');
for (let i = 0; i < depFiles; i++) {
  mkdirSync(join(contextDir, 'deps', `p${i % 10}`), { recursive: true });
  writeFileSync(join(contextDir, 'deps', `p${i % 10}`, `dep-${i}.txt`), `dependency ${i}\n`.repeat(20));
}
mkdirSync(join(contextDir, 'src'), { recursive: true });
for (let i = 0; i < srcFiles; i++)
  writeFileSync(join(contextDir, 'src', `mod-${i}.txt`), `module ${i}\n`.repeat(30));
const changed = join(contextDir, 'src', 'mod-0.txt');
const dockerfile = join(world.dir, 'Dockerfile');
writeFileSync(
  dockerfile,
  [
    `FROM ${BASE_NAME}`,
    'ENV APP_HOME=/app',
    'WORKDIR /app',
    'COPY deps/ /app/deps/',
    `RUN mkdir gen && i=0 && while [ $i -lt ${genFiles} ]; do echo "generated $i" > gen/g$i; i=$((i+1)); done`,
    'RUN find /app -type f | wc -l > /app/count.txt',
    'LABEL stage=bench',
    'COPY src/ /app/src/',
    '',
  ].join('\n'),
);
const spec = { context: contextDir, dockerfile };
const stratumCache = world.fresh('stratum-cache');
const builders = [
  { name: 'stratum', run: (noCache) => stratumBuild(world, { ...spec, cacheDir: stratumCache, noCache }) },
  ...(tools.docker ? [{ name: 'docker', run: (noCache) => dockerBuild(world, { ...spec, noCache }) }] : []),
  ...(tools.buildah
    ? [{ name: 'buildah', run: (noCache) => buildahBuild(world, { ...spec, noCache }) }]
    : []),
  ...(tools.buildkit
    ? [{ name: 'buildkit', run: (noCache) => buildkitBuild(world, { ...spec, noCache }) }]
    : []),
];

let version = 0;
const scenarios = [
  { name: 'cold build (empty cache)', before: () => undefined, cold: true, runs: 1 },
  { name: 'no-op rebuild', before: () => undefined, runs },
  {
    name: 'one file touched (mtime only)',
    before: () => {
      const now = Date.now() / 1000 + version++;
      utimesSync(changed, now, now);
    },
    runs,
  },
  {
    name: 'one file changed (content)',
    before: () => writeFileSync(changed, `module 0, edit ${version++}\n`.repeat(30)),
    runs,
  },
];

const results = new Map();
let stratumNoOutput;
let lastStratumOutput;
const extras = {};
try {
  for (const scenario of scenarios) {
    process.stdout.write(`${scenario.name}:`);
    for (const builder of builders) {
      const times = [];
      let rss = 0;
      let sampled = 0;
      let steps;
      for (let i = 0; i < scenario.runs; i++) {
        scenario.before();
        // stratum's cold run uses the fresh cache dir; the others get --no-cache (their layers
        // are still recorded for the rebuilds that follow).
        const result = await builder.run(scenario.cold === true && builder.name !== 'stratum');
        times.push(result.seconds);
        rss = Math.max(rss, result.rssMB);
        sampled = Math.max(sampled, result.sampledMB ?? 0);
        steps ??= result.steps;
        if (builder.name === 'stratum' && result.outputRef !== undefined)
          lastStratumOutput = result.outputRef;
      }
      process.stdout.write(` ${builder.name}`);
      results.set(`${scenario.name}/${builder.name}`, { times, rss, sampled, steps });
    }
    console.log();
  }

  // stratum without --output: what writing the layout costs on top of the no-op rebuild.
  const bare = [];
  for (let i = 0; i < runs; i++)
    bare.push((await stratumBuild(world, { ...spec, cacheDir: stratumCache, output: false })).seconds);
  stratumNoOutput = median(bare);

  // The floor: Node alone, the CLI printing its version, loading the library.
  const floor = async (args) => {
    const values = [];
    for (let i = 0; i < runs; i++) values.push((await timed('node', args, { cwd: repoRoot })).seconds);
    return median(values);
  };
  extras.nodeEmpty = await floor(['-e', '']);
  extras.version = await floor([stratumBin, '--version']);
  extras.importLib = await floor(['--input-type=module', '-e', "await import('./dist/index.js')"]);
  extras.importUndici = await floor(['--input-type=module', '-e', "await import('undici')"]);

  // In-process phases of a no-op rebuild (median of runs by total).
  const phaseRuns = [];
  for (let i = 0; i < runs; i++) {
    const out = spawnSync(
      'node',
      [
        self,
        '--phases',
        contextDir,
        dockerfile,
        stratumCache,
        world.dataDir,
        `oci:${world.fresh('phases-out')}:bench`,
      ],
      { encoding: 'utf8', env: stratumEnv(world) },
    );
    if (out.status !== 0) throw new Error(`phases run failed:\n${out.stderr}`);
    phaseRuns.push(JSON.parse(out.stdout.trim().split('\n').pop()));
  }
  phaseRuns.sort((a, b) => a.marks.done - b.marks.done);
  extras.phases = phaseRuns[Math.floor(phaseRuns.length / 2)];

  // What the one-file rebuild's COPY pays before copying: materialising the stage's rootfs.
  extras.materialize = measureMaterialize(lastStratumOutput, world.fresh('materialize'), stratumEnv(world));

  // A CPU profile of one CLI no-op rebuild.
  const profDir = world.fresh('cpu-prof');
  spawnSync(
    'node',
    [
      '--cpu-prof',
      '--cpu-prof-dir',
      profDir,
      stratumBin,
      'build',
      contextDir,
      '-f',
      dockerfile,
      '--network',
      'none',
      '--progress',
      'quiet',
      '--cache-dir',
      stratumCache,
      '--output',
      `oci:${world.fresh('prof-out')}:bench`,
    ],
    { env: stratumEnv(world), stdio: 'ignore' },
  );
  const profile = readdirSync(profDir).find((name) => name.endsWith('.cpuprofile'));
  extras.profile = profile === undefined ? undefined : summarizeProfile(join(profDir, profile));
} finally {
  cleanWorld(world, tools);
}

const cell = (scenario, builder) => {
  const r = results.get(`${scenario.name}/${builder.name}`);
  if (r === undefined) return 'not installed';
  const spread = r.times.length > 1 ? ` [${fmtS(Math.min(...r.times))}]` : '';
  const daemon =
    builder.name === 'docker' || builder.name === 'buildkit' ? `; dockerd ${fmtMB(r.sampled)}` : '';
  return `${fmtS(median(r.times))}${spread}, ${fmtMB(r.rss)}${daemon}`;
};
console.log();
table(
  [
    'rebuild',
    'stratum',
    'docker classic (+ save)',
    'buildah --layers (+ push)',
    'BuildKit (+ save)',
    'docker ÷ stratum',
    'buildah ÷ stratum',
    'BuildKit ÷ stratum',
  ],
  scenarios.map((scenario) => {
    const base = results.get(`${scenario.name}/stratum`);
    const ratio = (name) => {
      const other = results.get(`${scenario.name}/${name}`);
      return other === undefined ? '–' : `${(median(other.times) / median(base.times)).toFixed(2)}×`;
    };
    return [
      scenario.name,
      cell(scenario, builders[0]),
      cell(scenario, builders.find((b) => b.name === 'docker') ?? { name: 'docker' }),
      cell(scenario, builders.find((b) => b.name === 'buildah') ?? { name: 'buildah' }),
      cell(scenario, builders.find((b) => b.name === 'buildkit') ?? { name: 'buildkit' }),
      ratio('docker'),
      ratio('buildah'),
      ratio('buildkit'),
    ];
  }),
);

console.log('\nstratum step outcomes (first run of each row):');
for (const scenario of scenarios) {
  const r = results.get(`${scenario.name}/stratum`);
  console.log(
    `  ${scenario.name}: ${r.steps.map((s) => `${s.outcome.toLowerCase()} ${s.seconds.toFixed(2)}`).join(', ')}`,
  );
}

const noop = median(results.get('no-op rebuild/stratum').times);
const p = extras.phases;
const m = p.marks;
const lastStep = p.steps.at(-1)?.at ?? m.done;
console.log('\nwhere a stratum no-op rebuild spends its time (medians of separate runs, seconds):');
console.log(`  node -e '' (Node start-up alone)               ${fmtS(extras.nodeEmpty)}`);
console.log(`  stratum --version (start-up + CLI modules)     ${fmtS(extras.version)}`);
console.log(`  node: import dist/index.js                     ${fmtS(extras.importLib)}`);
console.log(`  node: import undici alone                      ${fmtS(extras.importUndici)}`);
console.log(`  CLI no-op rebuild without --output             ${fmtS(stratumNoOutput)}`);
console.log(`  CLI no-op rebuild with --output oci:           ${fmtS(noop)}`);
console.log('in-process no-op rebuild through buildImage (ms since process start):');
console.log(`  Node bootstrap complete                        ${p.bootstrap.toFixed(0)}`);
console.log(`  user code starts                               ${m.nodeReady.toFixed(0)}`);
console.log(
  `  dist/index.js imported                         ${m.imported.toFixed(0)} (+${(m.imported - m.nodeReady).toFixed(0)})`,
);
console.log(
  `  Dockerfile parsed (on its own)                 ${m.parsed.toFixed(0)} (+${(m.parsed - m.imported).toFixed(0)})`,
);
console.log(
  `  base image resolved, first stage starts        ${m.stageStart.toFixed(0)} (+${(m.stageStart - m.parsed).toFixed(0)})`,
);
console.log(
  `  ${p.steps.length} steps looked up in the cache             ${lastStep.toFixed(0)} (+${(lastStep - m.stageStart).toFixed(0)})`,
);
console.log(
  `  image finalized and written to oci:            ${m.done.toFixed(0)} (+${(m.done - lastStep).toFixed(0)})`,
);
console.log(
  `\nthe one-file rebuild's COPY first materialises the rootfs: ${describeMaterialize(extras.materialize)}`,
);
if (extras.profile !== undefined) {
  console.log('\n--cpu-prof of one CLI no-op rebuild:');
  printSummary(extras.profile, 12);
  const modules = extras.profile.files
    .filter((f) => f.file.startsWith('node:internal/modules') || f.file === '(garbage collector)')
    .reduce((sum, f) => sum + f.selfMs, 0);
  console.log(`  module loader + GC self time: ${modules.toFixed(0)} ms`);
}
