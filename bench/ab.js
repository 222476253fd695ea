// Two stratum checkouts side by side on bench/edit-loop.js's edit (Debian + gcc, hello.c
// changed): a change is judged by alternating rounds on one machine, since this VM's speed drifts
// by 10-20 % within minutes for any build (two separate runs of bench/edit-loop.js cannot tell
// 10 ms apart). Each checkout gets its own context and cache dir; rounds alternate which goes
// first; prints every time and the medians. Never asserts timings.
//
//   node bench/ab.js oneshot A/bin/stratum.js B/bin/stratum.js   one-shot builds (default 15 rounds)
//   node bench/ab.js watch   A/bin/stratum.js B/bin/stratum.js   a `build --watch` process each,
//                                                                from an edit to the result line
//   BENCH_RUNS=25  BENCH_BASE=/var/tmp/stratum-bench-debian (made by bench/edit-loop.js)
//
// Both checkouts need `npm run build`. A checkout can be made with `git worktree add DIR REV`
// and its node_modules linked from this one.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { machineNote, median } from './lib/harness.js';
import { DOCKERFILE, MAKEFILE, editBuildArgs, helloSource } from './lib/edit-loop-workload.js';

const [mode, ...bins] = process.argv.slice(2);
if ((mode !== 'oneshot' && mode !== 'watch') || bins.length !== 2 || !bins.every((bin) => existsSync(bin))) {
  console.error('usage: node bench/ab.js oneshot|watch A/bin/stratum.js B/bin/stratum.js');
  process.exit(2);
}
const runs = Number(process.env.BENCH_RUNS ?? (mode === 'watch' ? 25 : 15));
const baseDir = process.env.BENCH_BASE ?? '/var/tmp/stratum-bench-debian';
const layout = join(baseDir, 'layout');
if (!existsSync(layout)) {
  console.error(`${layout}: no base image; run bench/edit-loop.js once first`);
  process.exit(1);
}
const runId = Date.now().toString(36);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** A context and cache dir per checkout, kept under the base dir between runs. */
const sides = bins.map((bin, index) => {
  const dir = join(baseDir, 'work-ab', String(index));
  mkdirSync(join(dir, 'ctx'), { recursive: true });
  writeFileSync(join(dir, 'ctx', 'Dockerfile'), DOCKERFILE);
  writeFileSync(join(dir, 'ctx', 'Makefile'), MAKEFILE);
  writeFileSync(join(dir, 'ctx', 'hello.c'), helloSource(runId, 0));
  const args = editBuildArgs({
    context: join(dir, 'ctx'),
    cacheDir: join(dir, 'cache'),
    layout,
    mid: runId,
    output: `${join(dir, 'out')}:ab`,
  });
  return { bin: resolve(bin), dir, args, times: [] };
});

/** One-shot: the whole `node bin/stratum.js build` process, as bench/edit-loop.js times it. */
function oneShot(side, edit) {
  writeFileSync(join(side.dir, 'ctx', 'hello.c'), helloSource(runId, edit));
  const start = performance.now();
  const result = spawnSync(process.execPath, [side.bin, 'build', ...side.args, '-q'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${side.bin} failed:\n${result.stderr}`);
  return performance.now() - start;
}

/** A watching process; `edit(n)` resolves with the time from the write to the result line. */
function startWatch(side) {
  const child = spawn(process.execPath, [side.bin, 'build', '--watch', ...side.args, '--progress', 'plain'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const waiting = [];
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (const line of lines) if (line.startsWith('sha256:')) waiting.shift()?.(performance.now());
  });
  child.once('exit', (code) => {
    for (const fail of waiting.splice(0)) fail(Number.NaN);
    if (code !== null && code !== 130) console.error(`${side.bin} --watch ended (${code}):\n${stderr}`);
  });
  const next = () => new Promise((done) => waiting.push(done));
  return {
    ready: next(),
    async edit(n) {
      const done = next();
      const start = performance.now();
      writeFileSync(join(side.dir, 'ctx', 'hello.c'), helloSource(runId, n));
      return (await done) - start;
    },
    stop: () => child.kill('SIGINT'),
  };
}

async function main() {
  console.log(`${mode}, ${runs} rounds; ${machineNote()}`);
  const watches = mode === 'watch' ? sides.map(startWatch) : [];
  if (mode === 'watch') await Promise.all(watches.map((watch) => watch.ready));
  else for (const side of sides) oneShot(side, 0); // warm: the caches hold every step but the edit
  for (let round = 1; round <= runs; round++) {
    const order = round % 2 === 1 ? [0, 1] : [1, 0];
    for (const index of order) {
      await sleep(mode === 'watch' ? 400 : 300);
      const ms = mode === 'watch' ? await watches[index].edit(round) : oneShot(sides[index], round);
      sides[index].times.push(ms);
    }
  }
  for (const watch of watches) watch.stop();
  for (const side of sides) {
    const all = side.times.map((ms) => ms.toFixed(0)).join(' ');
    console.log(`${side.bin}: median ${median(side.times).toFixed(0)} ms (${all})`);
  }
}

await main();
