// `stratum build --watch` on bench/edit-loop.js's edit loop (Debian bookworm minbase + gcc base,
// a builder stage with `COPY Makefile hello.c ./` and `RUN make`, a runtime stage with
// `COPY --from`): one watching process; each round writes hello.c into its context and times
// until the rebuild's result line is on stdout (the image is in the OCI layout by then), and
// BuildKit's one-shot rebuild of the same edit (`DOCKER_BUILDKIT=1 /usr/bin/docker build -t`,
// into Docker's store, no save) in a second copy of the context, so neither sees the other's
// edit. Rounds alternate which goes first. Prints each time, the medians, the ratio and the
// load average before and after. Never asserts timings.
//
//   npm run build && node bench/watch.js
//   BENCH_RUNS=7      rounds (default 7)
//   BENCH_PROFILE=DIR the watching process runs with --cpu-prof into DIR (read with
//                     `node bench/lib/cpuprofile.js DIR/*.cpuprofile` or Chrome's DevTools)
//   BENCH_BASE=/var/tmp/stratum-bench-debian (made by bench/edit-loop.js: run it once first)
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmtS, machineNote, median, run, stratumBin, table, timed } from './lib/harness.js';
import { DOCKERFILE, MAKEFILE, editBuildArgs, helloSource } from './lib/edit-loop-workload.js';

const runs = Number(process.env.BENCH_RUNS ?? 7);
const baseDir = process.env.BENCH_BASE ?? '/var/tmp/stratum-bench-debian';
const profileDir = process.env.BENCH_PROFILE;
const dockerBase = `stratum-bench-watch/debian-gcc:${process.pid}`;
const dockerTag = `stratum-bench-watch/edit:${process.pid}`;

// Unique to this run: the caches are kept between runs, and an edit seen before would hit.
const runId = Date.now().toString(36);
const hello = (n) => helloSource(runId, n);
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function prepare() {
  const layout = join(baseDir, 'layout');
  const archive = join(baseDir, 'base.docker.tar');
  if (!existsSync(join(layout, 'index.json')) || !existsSync(archive))
    throw new Error(`no base in ${baseDir}: run node bench/edit-loop.js once first (it debootstraps it)`);
  run('/usr/bin/docker', ['load', '-q', '-i', archive]);
  run('/usr/bin/docker', ['tag', 'stratum-bench/debian-gcc:1', dockerBase]);
  const dir = join(baseDir, 'work-watch');
  const contexts = { stratum: join(dir, 'ctx-stratum'), buildkit: join(dir, 'ctx-buildkit') };
  for (const context of Object.values(contexts)) {
    rmSync(context, { recursive: true, force: true });
    mkdirSync(context, { recursive: true });
    writeFileSync(join(context, 'Dockerfile'), DOCKERFILE);
    writeFileSync(join(context, 'Makefile'), MAKEFILE);
    writeFileSync(join(context, 'hello.c'), hello(0));
  }
  return { layout, dir, contexts };
}

/** The watching process, and a promise per result line it prints. */
function startWatch({ layout, dir, contexts }) {
  const args = [
    ...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]),
    stratumBin,
    'build',
    '--watch',
    '--progress',
    'plain',
    ...editBuildArgs({
      context: contexts.stratum,
      cacheDir: join(dir, 'cache'),
      layout,
      mid: runId,
      output: `${join(dir, 'out')}:bench`,
    }),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let buffered = '';
  const waiting = [];
  const results = [];
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let exited = false;
  child.once('exit', () => {
    exited = true;
    for (const { reject } of waiting.splice(0)) reject(new Error(`stratum --watch ended:\n${stderr}`));
  });
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (const line of lines) {
      if (!line.startsWith('sha256:')) continue;
      const at = performance.now();
      const next = waiting.shift();
      if (next === undefined) results.push(at);
      else next.resolve(at);
    }
  });
  const failures = () => stderr.split('\n').filter((line) => line.startsWith('stratum: '));
  return {
    child,
    stderr: () => stderr,
    /** When the next result line comes (or came). */
    nextResult: () =>
      results.length > 0
        ? Promise.resolve(results.shift())
        : exited
          ? Promise.reject(new Error(`stratum --watch ended:\n${stderr}`))
          : new Promise((resolve, reject) => {
              waiting.push({ resolve, reject });
            }),
    failures,
  };
}

async function main() {
  const setup = prepare();
  const machine = machineNote();
  console.log('first builds (not timed: cold unless an earlier run left the caches)...');
  const watching = startWatch(setup);
  await watching.nextResult();
  const buildkit = () =>
    timed(
      '/usr/bin/docker',
      [
        'build',
        '-q',
        '--network',
        'none',
        '-t',
        dockerTag,
        '--build-arg',
        `BASE=${dockerBase}`,
        '--build-arg',
        `MID=${runId}`,
        setup.contexts.buildkit,
      ],
      { env: { ...process.env, DOCKER_BUILDKIT: '1' } },
    );
  await buildkit();
  const times = { watch: [], buildkit: [] };
  let edit = 0;
  for (let round = 0; round < runs; round++) {
    edit++;
    const contenders = {
      watch: async () => {
        const saved = performance.now();
        writeFileSync(join(setup.contexts.stratum, 'hello.c'), hello(edit));
        return ((await watching.nextResult()) - saved) / 1000;
      },
      buildkit: async () => {
        writeFileSync(join(setup.contexts.buildkit, 'hello.c'), hello(edit));
        return (await buildkit()).seconds;
      },
    };
    const order = round % 2 === 0 ? ['watch', 'buildkit'] : ['buildkit', 'watch'];
    for (const name of order) {
      times[name].push(await contenders[name]());
      // Untimed: each contender's writes are flushed before the other's turn, so that neither
      // one's flushes (a layer blob, index.json) wait behind the other's writeback (as
      // bench/edit-loop.js does); then the machine settles (BuildKit's daemon finishes its work).
      run('sync', []);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    console.log(
      `  round ${round + 1}: watch ${fmtS(times.watch.at(-1))}, BuildKit ${fmtS(times.buildkit.at(-1))}`,
    );
  }
  watching.child.kill('SIGINT');
  await new Promise((resolve) => watching.child.once('exit', resolve));
  if (watching.failures().length > 0) console.log(`stratum errors:\n${watching.failures().join('\n')}`);
  // Per rebuild: the seconds its three steps that ran (COPY, RUN make, COPY --from) took, as
  // the progress says; the rest of the save-to-image time is the debounce, planning, cache
  // lookups, committing and writing the layout.
  const rebuilds = watching.stderr().split('[watch] hello.c changed: rebuilding').slice(1);
  const stepSeconds = rebuilds.map((text) =>
    [...text.matchAll(/^#\d+ DONE (\d+\.\d+)s layer/gm)].reduce((sum, match) => sum + Number(match[1]), 0),
  );
  const makeSeconds = rebuilds.map((text) => {
    const id = /^(#\d+) \[builder \d+\/\d+\] RUN make$/m.exec(text)?.[1];
    const done = id === undefined ? undefined : new RegExp(`^${id} DONE (\\d+\\.\\d+)s`, 'm').exec(text);
    return done === null || done === undefined ? 0 : Number(done[1]);
  });
  const bk = median(times.buildkit);
  const w = median(times.watch);
  console.log(
    `watch rebuilds: steps that ran ${fmtS(median(stepSeconds))} (RUN make ${fmtS(median(makeSeconds))}), the rest ${fmtS(w - median(stepSeconds))} (medians)`,
  );
  console.log(`${machine}; load average at the end ${loadavg()}`);
  table(
    ['edit → image written', 'median', 'min', 'max'],
    [
      [
        'stratum build --watch (OCI layout)',
        `${w.toFixed(3)} s`,
        fmtS(Math.min(...times.watch)),
        fmtS(Math.max(...times.watch)),
      ],
      [
        'BuildKit one-shot (Docker store, no save)',
        `${bk.toFixed(3)} s`,
        fmtS(Math.min(...times.buildkit)),
        fmtS(Math.max(...times.buildkit)),
      ],
      ['ratio (watch / BuildKit)', `${(w / bk).toFixed(3)}×`, '', ''],
    ],
  );
  run('/usr/bin/docker', ['rmi', '-f', dockerTag, dockerBase]);
}

await main();
