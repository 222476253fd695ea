// RUN inside a standard container, per isolation mode, against the same build on the host: the
// time of each RUN step as stratum's plain log reports it (`#3 DONE 1.23s`), median of BENCH_RUNS
// (default 3) builds with --no-cache. Rows: a syscall-heavy step (copying a tree of small files),
// an exec-heavy step (500 processes), and a CPU-bound step (sha256 of 64 MiB).
// Needs the image test/cli/in-container.test.ts makes (stratum-test/debian-ci:2; run that test
// once) and a Docker daemon. Run as root: npm run build && node bench/in-container.js
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeBusyboxRootfs, writeBaseImage } from '../examples/busybox-base.js';

const DOCKER = '/usr/bin/docker';
const IMAGE = 'stratum-test/debian-ci:2';
const REPO = resolve(import.meta.dirname, '..');
const runs = Number(process.env.BENCH_RUNS ?? 3);

const steps = [
  [
    'copy a tree of small files (syscalls)',
    'mkdir /x && for i in 1 2 3 4 5 6 7 8 9 10; do cp -a /bin /x/b$i; done && rm -rf /x',
  ],
  ['500 processes (exec)', 'i=0; while [ $i -lt 500 ]; do /bin/true; i=$((i+1)); done'],
  ['sha256 of 64 MiB (CPU)', 'head -c 67108864 /dev/zero | sha256sum > /dev/null'],
];

if (spawnSync(DOCKER, ['image', 'inspect', IMAGE], { stdio: 'ignore' }).status !== 0) {
  console.log(`${IMAGE} is not in Docker's store: run test/cli/in-container.test.ts once to make it`);
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-container-'));
chmodSync(dir, 0o755);
try {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  makeBusyboxRootfs(rootfs);
  writeBaseImage(rootfs, join(dir, 'base'), 'stratum-bench/busybox:1');
  mkdirSync(join(dir, 'ctx'));
  writeFileSync(
    join(dir, 'ctx/Dockerfile'),
    ['ARG BASE', 'FROM oci:${BASE}:1', ...steps.map(([, command]) => `RUN ${command}`), ''].join('\n'),
  );
  const stepTimes = (log) => [...log.matchAll(/^#\d+ DONE (\d+\.\d+)s/gm)].map((match) => Number(match[1]));
  const where = {
    host: () =>
      spawnSync(
        process.execPath,
        [
          join(REPO, 'bin/stratum.js'),
          'build',
          join(dir, 'ctx'),
          '--build-arg',
          `BASE=${join(dir, 'base/layout')}`,
          '--no-cache',
          '--network',
          'host',
          '--progress',
          'plain',
          '-o',
          'type=tar,dest=/dev/null',
        ],
        { encoding: 'utf8', env: { ...process.env, STRATUM_CACHE_DIR: join(dir, 'cache') } },
      ),
    ...Object.fromEntries(
      [
        ["container, Docker's defaults (proot)", []],
        ['container, seccomp=unconfined (namespaces)', ['--security-opt', 'seccomp=unconfined']],
      ].map(([name, options]) => [
        name,
        () =>
          spawnSync(
            DOCKER,
            [
              'run',
              '--rm',
              ...options,
              '-e',
              'STRATUM_CACHE_DIR=/var/cache/stratum',
              '-v',
              `${REPO}:/stratum:ro`,
              '-v',
              `${process.execPath}:/usr/local/bin/node:ro`,
              '-v',
              `${dir}:/work:ro`,
              IMAGE,
              'node',
              '/stratum/bin/stratum.js',
              'build',
              '/work/ctx',
              '--build-arg',
              'BASE=/work/base/layout',
              '--no-cache',
              '--network',
              'host',
              '--progress',
              'plain',
              '-o',
              'type=tar,dest=/dev/null',
            ],
            { encoding: 'utf8' },
          ),
      ]),
    ),
  };
  const results = {};
  for (let round = 0; round < runs; round++) {
    for (const [name, build] of Object.entries(where)) {
      const result = build();
      if (result.status !== 0) throw new Error(`${name}: ${result.stderr}`);
      (results[name] ??= []).push(stepTimes(result.stderr));
    }
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ')[0];
  console.log(`RUN step times, median of ${runs} (load ${load})\n`);
  console.log(`| step | ${Object.keys(where).join(' | ')} |`);
  console.log(
    `|---|${Object.keys(where)
      .map(() => '---|')
      .join('')}`,
  );
  for (const [index, [label]] of steps.entries()) {
    const host = median(results.host.map((times) => times[index]));
    const cells = Object.keys(where).map((name) => {
      const value = median(results[name].map((times) => times[index]));
      return name === 'host'
        ? `${value.toFixed(2)} s`
        : `${value.toFixed(2)} s (${(value / host).toFixed(1)}×)`;
    });
    console.log(`| ${label} | ${cells.join(' | ')} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
