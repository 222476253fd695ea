// Shared pieces of the build and cache benchmarks: finding the builders, one "world" (temp dir,
// busybox base loaded into every builder), timing a command with GNU time, sampling dockerd's
// memory, and printing tables. Plain JS, no dependency beyond Node.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs, writeBaseImage } from '../../examples/busybox-base.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const stratumBin = join(repoRoot, 'bin/stratum.js');
export const BASE_NAME = 'stratum-bench/busybox:1';

export function hasCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Debian's Docker client: BuildKit is built in (DOCKER_BUILDKIT=1), where a newer client first on
 * PATH needs the buildx plugin.
 */
export const DEBIAN_DOCKER = '/usr/bin/docker';

/** Which builders can run here. BuildKit: Debian's client with DOCKER_BUILDKIT=1. */
export function detectTools() {
  const dockerOk = hasCommand('docker') && spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0;
  const buildkit =
    dockerOk &&
    existsSync(DEBIAN_DOCKER) &&
    spawnSync(DEBIAN_DOCKER, ['build', '--help'], {
      encoding: 'utf8',
      env: { ...process.env, DOCKER_BUILDKIT: '1' },
    }).stdout?.includes('--secret') === true;
  const wanted = (process.env.BENCH_TOOLS ?? 'stratum,docker,buildah,buildkit').split(',');
  return {
    stratum: existsSync(join(repoRoot, 'dist/index.js')),
    docker: dockerOk && wanted.includes('docker'),
    buildah: hasCommand('buildah') && wanted.includes('buildah'),
    buildkit: buildkit && wanted.includes('buildkit'),
    dockerVersion: dockerOk
      ? spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], {
          encoding: 'utf8',
        }).stdout.trim()
      : undefined,
    buildahVersion: hasCommand('buildah')
      ? spawnSync('buildah', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[2]
      : undefined,
  };
}

/**
 * A temp dir with the busybox base in every builder's store: stratum's data dir (via `stratum
 * copy`), Docker (`docker load`) and a private buildah storage (`buildah pull docker-archive:`).
 */
export function makeWorld(prefix, tools) {
  // Lower case (no mkdtemp): buildah and Docker reject upper-case letters where a path turns
  // into a name.
  // BENCH_TMPDIR (default /var/tmp) holds everything, stratum's rootfs workspace included
  // (TMPDIR for its process): on this machine, creating files under /tmp costs 10-40x what it
  // costs elsewhere on the same disk, and Docker's own state lives under /var/lib/docker.
  const parent = process.env.BENCH_TMPDIR ?? (existsSync('/var/tmp') ? '/var/tmp' : tmpdir());
  const dir = join(parent, `${prefix}-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const rootfs = join(dir, 'base-rootfs');
  mkdirSync(rootfs);
  makeBusyboxRootfs(rootfs);
  const base = writeBaseImage(rootfs, join(dir, 'base'), BASE_NAME, {
    createdBy: 'busybox base for stratum benchmarks',
  });
  const world = {
    dir,
    base,
    dataDir: join(dir, 'stratum-data'),
    buildahRoot: join(dir, 'buildah/root'),
    buildahRunroot: join(dir, 'buildah/run'),
    dockerTags: new Set(),
    counter: 0,
    /** A fresh path under the world, for outputs and cache dirs. */
    fresh(name) {
      return join(dir, `${name}-${world.counter++}`);
    },
  };
  run('node', [stratumBin, 'copy', `oci:${base.layout}:1`, BASE_NAME], { env: stratumEnv(world) });
  if (tools.docker || tools.buildkit) run('docker', ['load', '-q', '-i', base.dockerArchive]);
  if (tools.buildah)
    run('buildah', [...buildahGlobal(world), 'pull', '-q', `docker-archive:${base.dockerArchive}`]);
  return world;
}

export function stratumEnv(world, cacheDir) {
  return {
    ...process.env,
    STRATUM_DATA_DIR: world.dataDir,
    TMPDIR: join(world.dir, 'tmp'),
    ...(cacheDir === undefined ? {} : { STRATUM_CACHE_DIR: cacheDir }),
  };
}

/** Storage of our own under the world (overlay, as Docker uses overlay2 here). */
export function buildahGlobal(world) {
  return ['--root', world.buildahRoot, '--runroot', world.buildahRunroot, '--storage-driver', 'overlay'];
}

export function cleanWorld(world, tools) {
  if (process.env.BENCH_KEEP) {
    console.log(`kept ${world.dir}`);
    return;
  }
  if ((tools.docker || tools.buildkit) && world.dockerTags.size > 0)
    spawnSync('docker', ['rmi', '-f', ...world.dockerTags], { stdio: 'ignore' });
  if (tools.buildah) {
    spawnSync('buildah', [...buildahGlobal(world), 'rm', '--all'], { stdio: 'ignore' });
    spawnSync('buildah', [...buildahGlobal(world), 'rmi', '--all', '--force'], { stdio: 'ignore' });
    // containers/storage leaves its overlay home mounted; unmount before removing the tree.
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[1])
      .filter((point) => point !== undefined && point.startsWith(join(world.dir, 'buildah')))
      .sort((a, b) => b.length - a.length);
    for (const point of mounts) spawnSync('umount', ['-l', point], { stdio: 'ignore' });
  }
  rmSync(world.dir, { recursive: true, force: true });
}

/** Runs a command to completion (no timing); throws with its output when it fails. */
export function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.status}):\n${result.stdout}\n${result.stderr}`,
    );
  return result.stdout;
}

export function dockerdPid() {
  const out = spawnSync('pidof', ['dockerd'], { encoding: 'utf8' }).stdout.trim();
  return out === '' ? undefined : Number(out.split(' ')[0]);
}

/** VmRSS / VmHWM of a process in kB, or undefined when it is gone. */
export function procMemory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    return { rss: field('VmRSS'), hwm: field('VmHWM') };
  } catch {
    return undefined;
  }
}

/**
 * Runs `command args` under GNU time. Returns wall seconds (our own clock, ms resolution), peak
 * RSS in MB of the process tree's largest member (GNU time's %M: only what this process and its
 * children waited for, so never the Docker daemon), stdout and stderr. With `samplePid`, that
 * process's RSS is polled every 50 ms and its peak returned as `sampledMB`.
 */
export async function timed(command, args, { env, cwd, samplePid } = {}) {
  const timeFile = join(tmpdir(), `stratum-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%e %M', '-o', timeFile, command, ...args], {
    env: env ?? process.env,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  let sampled = 0;
  const sample = () => {
    const memory = samplePid === undefined ? undefined : procMemory(samplePid);
    if (memory !== undefined && memory.rss > sampled) sampled = memory.rss;
  };
  sample();
  const timer = samplePid === undefined ? undefined : setInterval(sample, 50);
  const code = await new Promise((resolvePromise) => child.on('close', resolvePromise));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (timer !== undefined) clearInterval(timer);
  sample();
  const timeOut = existsSync(timeFile) ? readFileSync(timeFile, 'utf8') : '';
  rmSync(timeFile, { force: true });
  if (code !== 0)
    throw new Error(`${command} ${args.join(' ')} failed (${code}):\n${stdout}\n${stderr}\n${timeOut}`);
  const last = timeOut.trim().split('\n').pop() ?? '';
  const [, kb] = last.split(' ').map(Number);
  return { seconds, rssMB: (kb ?? 0) / 1024, sampledMB: sampled / 1024, stdout, stderr };
}

/** Adds up a sequence of timed commands (build then save/push): total seconds, max RSS. */
export function combine(...parts) {
  return {
    seconds: parts.reduce((sum, part) => sum + part.seconds, 0),
    rssMB: Math.max(...parts.map((part) => part.rssMB)),
    sampledMB: Math.max(...parts.map((part) => part.sampledMB ?? 0)),
    parts: parts.map((part) => part.seconds),
  };
}

/** Step times from stratum's `--progress plain` ("#3 DONE 0.71s ..."), in order. */
export function stratumStepTimes(progress) {
  const steps = [];
  let current;
  for (const line of progress.split('\n')) {
    const start = /^#\d+ \[\S+ (\d+)\/\d+\] (.*)$/.exec(line);
    if (start) current = start[2];
    const end = /^#\d+ (DONE|CACHED|FAILED) (\d+\.\d+)s/.exec(line);
    if (end) steps.push({ instruction: current ?? '?', outcome: end[1], seconds: Number(end[2]) });
  }
  return steps;
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export const fmtS = (seconds) => (seconds === undefined ? '–' : `${seconds.toFixed(2)} s`);
export const fmtMB = (mb) => (mb === undefined ? '–' : `${Math.round(mb)} MB`);

/** Prints a Markdown table (also readable as plain text) and returns its text. */
export function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  const text = lines.join('\n');
  console.log(text);
  return text;
}

/** The 1, 5 and 15 minute load averages, as /proc/loadavg has them. */
export function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export function machineNote() {
  const cpus = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const where = process.env.BENCH_TMPDIR ?? '/var/tmp';
  return `${cpus} cores, Node ${process.versions.node}, load average at start ${load}, state under ${where}`;
}
