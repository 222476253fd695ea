// One build with each builder, measured the same way: wall time from our clock and GNU time's
// peak RSS, including writing the image out (stratum --output oci:, `docker save -o`,
// `buildah push IMAGE oci:DIR`). Every call writes to a fresh output path.
import { spawnSync } from 'node:child_process';
import {
  DEBIAN_DOCKER,
  buildahGlobal,
  combine,
  dockerdPid,
  stratumBin,
  stratumEnv,
  stratumStepTimes,
  timed,
} from './harness.js';

/**
 * stratum CLI build. `cacheDir` is passed as --cache-dir so that cache entries and layer blobs
 * both live there (a fresh dir is a truly cold cache). `output: false` skips --output.
 */
export async function stratumBuild(world, { context, dockerfile, cacheDir, noCache = false, output = true }) {
  const args = [stratumBin, 'build', context, '-f', dockerfile, '--network', 'none', '--progress', 'plain'];
  const outputRef = output ? `oci:${world.fresh('stratum-out')}:bench` : undefined;
  if (outputRef !== undefined) args.push('--output', outputRef);
  if (noCache) args.push('--no-cache');
  args.push('--cache-dir', cacheDir);
  const result = await timed('node', args, { env: stratumEnv(world) });
  return { ...combine(result), steps: stratumStepTimes(result.stderr), log: result.stderr, outputRef };
}

/** Docker's classic builder, then `docker save`; dockerd's RSS is sampled during both. */
export async function dockerBuild(world, { context, dockerfile, noCache = false }) {
  const tag = `stratum-bench/build:${world.counter++}`;
  world.dockerTags.add(tag);
  const samplePid = dockerdPid();
  const env = { ...process.env, DOCKER_BUILDKIT: '0' };
  const args = ['build', '--network=none', '-q', '-t', tag, '-f', dockerfile];
  if (noCache) args.push('--no-cache');
  args.push(context);
  const build = await timed('docker', args, { env, samplePid });
  const save = await timed('docker', ['save', '-o', `${world.fresh('docker-save')}.tar`, tag], { samplePid });
  return combine(build, save);
}

/**
 * BuildKit (Debian's Docker client, DOCKER_BUILDKIT=1), then `docker save`; dockerd sampled.
 * `prune` empties BuildKit's build cache first (untimed), for a build as cold as stratum's;
 * `beforeTimed` runs after that, untimed (bench/build.js settles the disk there).
 */
export async function buildkitBuild(
  world,
  { context, dockerfile, noCache = false, prune = false, beforeTimed },
) {
  const tag = `stratum-bench/buildkit:${world.counter++}`;
  world.dockerTags.add(tag);
  if (prune) spawnSync(DEBIAN_DOCKER, ['builder', 'prune', '-af'], { stdio: 'ignore' });
  beforeTimed?.();
  const samplePid = dockerdPid();
  const env = { ...process.env, DOCKER_BUILDKIT: '1' };
  const args = ['build', '--network=none', '-q', '-t', tag, '-f', dockerfile];
  if (noCache) args.push('--no-cache');
  args.push(context);
  const build = await timed(DEBIAN_DOCKER, args, { env, samplePid });
  const save = await timed(DEBIAN_DOCKER, ['save', '-o', `${world.fresh('buildkit-save')}.tar`, tag], {
    samplePid,
  });
  return combine(build, save);
}

/** buildah bud (OCI isolation through runc, --network none, --layers), then `buildah push oci:`. */
export async function buildahBuild(world, { context, dockerfile, noCache = false }) {
  const tag = `stratum-bench/build:${world.counter++}`;
  const global = buildahGlobal(world);
  const args = [
    ...global,
    'bud',
    '--isolation',
    'oci',
    '--network',
    'none',
    '--layers',
    '-q',
    '-t',
    tag,
    '-f',
    dockerfile,
  ];
  if (noCache) args.push('--no-cache');
  args.push(context);
  const build = await timed('buildah', args);
  const push = await timed('buildah', [
    ...global,
    'push',
    '-q',
    tag,
    `oci:${world.fresh('buildah-out')}:bench`,
  ]);
  return combine(build, push);
}
