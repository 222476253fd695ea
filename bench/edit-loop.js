// The edit-rebuild loop on a realistic base: Debian bookworm minbase + gcc (debootstrap), a
// builder stage whose early RUN modifies and deletes lower files, `COPY Makefile hello.c`,
// `RUN make`, and a runtime stage with `COPY --from`. Rows, each the median of BENCH_RUNS
// (default 3) runs taken in turns (overlay, scan, BuildKit, overlay, ...):
//   edit      hello.c changed: the COPY, make and the runtime COPY --from miss
//   no-op     nothing changed, the image is written out again
//   mid-stage a build arg read by the RUN right after the modifying RUN changed: from there on
//             every step misses, on top of a filesystem whose lower files were modified/deleted
// stratum runs with --snapshotter overlay (and scan, with BENCH_SNAPSHOTTERS=overlay,scan) and
// writes --output oci:; BuildKit is `DOCKER_BUILDKIT=1 /usr/bin/docker build -t`: the image goes
// into Docker's store, which is how a developer iterating with Docker uses it, and is the
// headline column. The `docker save` of that image is timed after each build as a second figure
// (BuildKit + save: an image file as stratum writes one), then sync(1), untimed, so that neither
// builder's next build waits behind the save's writeback. BuildKit's build cache is pruned before
// the first builds (`docker builder prune -af`), as stratum's runs start from the caches this
// script keeps. Peak RSS is GNU time's (the largest process of stratum's tree). Never asserts
// timings.
//
//   npm run build && node bench/edit-loop.js
//   BENCH_RUNS=3  BENCH_BASE=/var/tmp/stratum-bench-debian (debootstrapped once, then reused)
//   BENCH_SNAPSHOTTERS=overlay (default; overlay,scan adds the scan snapshotter)
//   BENCH_MIRROR=http://deb.debian.org/debian
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  fmtMB,
  fmtS,
  loadAverage,
  machineNote,
  median,
  run,
  stratumBin,
  table,
  timed,
} from './lib/harness.js';
import { DOCKERFILE, MAKEFILE, helloSource } from './lib/edit-loop-workload.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const snapshotters = (process.env.BENCH_SNAPSHOTTERS ?? 'overlay').split(',');
const baseDir = process.env.BENCH_BASE ?? '/var/tmp/stratum-bench-debian';
const mirror = process.env.BENCH_MIRROR ?? 'http://deb.debian.org/debian';
const dockerTag = `stratum-bench-i11/debian-gcc:${process.pid}`;

/** debootstrap once (minutes), then pack the rootfs as an OCI layout and a docker-archive. */
function prepareBase() {
  const rootfs = join(baseDir, 'rootfs');
  if (!existsSync(join(rootfs, 'usr/bin/gcc'))) {
    console.log(`debootstrap bookworm minbase + gcc into ${rootfs} (once)...`);
    rmSync(rootfs, { recursive: true, force: true });
    mkdirSync(baseDir, { recursive: true });
    run('debootstrap', ['--variant=minbase', '--include=gcc,make,libc6-dev', 'bookworm', rootfs, mirror]);
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
  }
  const layout = join(baseDir, 'layout');
  const archive = join(baseDir, 'base.docker.tar');
  if (!existsSync(archive)) {
    console.log('packing the base (once)...');
    // A docker-archive with one layer; stratum copies it into an OCI layout.
    const work = join(baseDir, 'archive');
    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(work, 'layer'), { recursive: true });
    run('tar', [
      '-C',
      rootfs,
      '--sort=name',
      '--numeric-owner',
      '--xattrs',
      '-cf',
      join(work, 'layer/layer.tar'),
      '.',
    ]);
    const diffId = run('sha256sum', [join(work, 'layer/layer.tar')]).split(' ')[0];
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['bash'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'debootstrap bookworm minbase + gcc' }],
    });
    writeFileSync(join(work, 'config.json'), config);
    writeFileSync(
      join(work, 'manifest.json'),
      JSON.stringify([
        { Config: 'config.json', RepoTags: ['stratum-bench/debian-gcc:1'], Layers: ['layer/layer.tar'] },
      ]),
    );
    run('tar', ['-C', work, '-cf', `${archive}.tmp`, '.']);
    run('mv', [`${archive}.tmp`, archive]);
    rmSync(work, { recursive: true, force: true });
    rmSync(layout, { recursive: true, force: true });
  }
  if (!existsSync(layout)) run('node', [stratumBin, 'copy', `docker-archive:${archive}`, `oci:${layout}:1`]);
  run('/usr/bin/docker', ['load', '-q', '-i', archive]);
  run('/usr/bin/docker', ['tag', 'stratum-bench/debian-gcc:1', dockerTag]);
  return { layout };
}

// Values unique to this run: the caches are kept between runs, and an edit seen before would hit.
const runId = Date.now().toString(36);
const hello = (n) => helloSource(runId, n);

async function main() {
  const { layout } = prepareBase();
  // Under the base dir and kept between runs: caches warm from an earlier run only speed up the
  // first (untimed) builds.
  const dir = join(baseDir, 'work');
  mkdirSync(dir, { recursive: true });
  const context = join(dir, 'ctx');
  mkdirSync(context, { recursive: true });
  writeFileSync(join(context, 'Dockerfile'), DOCKERFILE);
  writeFileSync(join(context, 'Makefile'), MAKEFILE);
  let edit = 0;
  let mid = 0;
  writeFileSync(join(context, 'hello.c'), hello(edit));

  const contenders = {
    ...Object.fromEntries(snapshotters.map((name) => [name, (extra) => stratum(name, extra)])),
    buildkit: (extra) => buildkit(extra),
  };
  let outputs = 0;
  function stratum(snapshotter, buildArgs) {
    const args = [stratumBin, 'build', context, '--progress', 'plain', '--network', 'none'];
    args.push('--snapshotter', snapshotter, '--cache-dir', join(dir, `cache-${snapshotter}`));
    args.push('--build-arg', `BASE=oci:${layout}:1`, ...buildArgs.flatMap((arg) => ['--build-arg', arg]));
    args.push('--output', `oci:${join(dir, `out-${outputs++}`)}:bench`);
    return timed('node', args, { env: { ...process.env, TMPDIR: join(dir) } });
  }
  async function buildkit(buildArgs) {
    const args = [
      'build',
      '-q',
      '--network',
      'none',
      '-t',
      `stratum-bench-i11/edit:${process.pid}`,
      '--build-arg',
      `BASE=${dockerTag}`,
    ];
    args.push(...buildArgs.flatMap((arg) => ['--build-arg', arg]), context);
    const built = await timed('/usr/bin/docker', args, { env: { ...process.env, DOCKER_BUILDKIT: '1' } });
    // The image as a file, as stratum writes one: timed apart, so the store figure stays clean.
    const saved = await timed('/usr/bin/docker', [
      'save',
      '-o',
      join(dir, 'buildkit-save.tar'),
      `stratum-bench-i11/edit:${process.pid}`,
    ]);
    // Untimed: the save's ~460 MB of writes would otherwise be written back during the next
    // build of either builder, whose own flushes then wait behind them (as bench/build.js).
    run('sync', []);
    return { ...built, saveSeconds: saved.seconds };
  }

  console.log("pruning BuildKit's build cache (docker builder prune -af)...");
  run('/usr/bin/docker', ['builder', 'prune', '-af']);

  console.log('first builds (not timed as rows; cold unless an earlier run left the caches)...');
  for (const [name, build] of Object.entries(contenders)) {
    const result = await build([`MID=${runId}-${mid}`]);
    console.log(`  ${name}: ${fmtS(result.seconds)}, ${fmtMB(result.rssMB)}`);
  }

  const scenarios = {
    edit: () => {
      writeFileSync(join(context, 'hello.c'), hello(++edit));
      return [`MID=${runId}-${mid}`];
    },
    'no-op': () => [`MID=${runId}-${mid}`],
    'mid-stage': () => [`MID=${runId}-${++mid}`],
  };
  const rows = [];
  for (const [scenario, change] of Object.entries(scenarios)) {
    const times = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]));
    const rss = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]));
    const saves = [];
    for (let round = 0; round < runs; round++) {
      // Each contender sees the same change: make it once per contender on a fresh counter.
      const names = Object.keys(contenders);
      const rotated = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
      const savedEdit = edit;
      const savedMid = mid;
      for (const name of rotated) {
        edit = savedEdit;
        mid = savedMid;
        const buildArgs = change();
        const result = await contenders[name](buildArgs);
        times[name].push(result.seconds);
        rss[name].push(result.rssMB);
        if (result.saveSeconds !== undefined) saves.push(result.seconds + result.saveSeconds);
        if (name !== 'buildkit' && round === 0 && scenario === 'edit') {
          console.log(
            result.stderr
              .split('\n')
              .filter((line) => /=>|extracting|snapshotter|DONE/.test(line))
              .join('\n'),
          );
        }
      }
    }
    const bk = median(times.buildkit);
    const bkSave = median(saves);
    rows.push([
      scenario,
      ...snapshotters.map(
        (name) =>
          `${fmtS(median(times[name]))} (${(median(times[name]) / bk).toFixed(2)}× BuildKit, ${(median(times[name]) / bkSave).toFixed(2)}× with save), ${fmtMB(Math.max(...rss[name]))}`,
      ),
      `${fmtS(bk)} (${times.buildkit.map((t) => t.toFixed(2)).join(' / ')})`,
      fmtS(bkSave),
      loadAverage(),
    ]);
  }
  console.log(machineNote());
  table(
    [
      'rebuild',
      ...snapshotters.map((name) => `stratum ${name} (ratios), peak RSS`),
      'BuildKit, image in the store (each round)',
      'BuildKit + docker save',
      'load after the row',
    ],
    rows,
  );
  {
    run('/usr/bin/docker', ['rmi', '-f', `stratum-bench-i11/edit:${process.pid}`, dockerTag]);
  }
}

await main();
