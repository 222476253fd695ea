// Parity with BuildKit on an out-of-sample corpus: kaniko's integration Dockerfiles and
// imagebuilder's Docker-conformance cases (../shared/corpora, which users do not have). Each case
// is built by BuildKit (Debian's Docker 20.10 client, DOCKER_BUILDKIT=1, --network=none
// --no-cache) and by stratum (the library's buildImage, on each snapshotter), on local stand-ins
// for its base images, and the two images are compared with diffImages: the filesystem after
// every step, the layers and the config. A measurement, not a test.
//
//   npm run build && node bench/corpus-parity.js
//
// CORPUS_CASES=REGEX picks cases by id; CORPUS_SNAPSHOTTERS=overlay,scan (the default) picks
// stratum's snapshotters; CORPORA=DIR points at the corpora (default ../shared/corpora);
// CORPUS_KEEP=1 keeps the work directory and the Docker images; BENCH_DIST=DIR measures the
// stratum build in DIR instead of this checkout's dist/. Needs root and a Docker daemon.
// Debian-based cases need the debootstrapped rootfs that test/helpers/container-image.ts keeps
// in $STRATUM_TEST_DEBIAN (default /var/tmp/stratum-test-debian); without it they are skipped.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeBusyboxRootfs, writeBaseImage } from '../examples/busybox-base.js';
import { LOCAL_PREFIX, corpusCases, localNames, rewriteDockerfile, standInFor } from './lib/corpus-cases.js';
import { DEBIAN_DOCKER, repoRoot } from './lib/harness.js';

// BENCH_DIST measures another build of stratum (a checkout's dist/), e.g. the commit before a fix.
const { ImageStore, buildImage, diffImages, formatImageDiff, openImage, openOciLayout } = await import(
  resolve(process.env.BENCH_DIST ?? join(repoRoot, 'dist'), 'index.js')
);

const CORPORA = resolve(process.env.CORPORA ?? join(repoRoot, '../shared/corpora'));
const SNAPSHOTTERS = (process.env.CORPUS_SNAPSHOTTERS ?? 'overlay,scan').split(',');
const PICK = process.env.CORPUS_CASES === undefined ? undefined : new RegExp(process.env.CORPUS_CASES);
const DEBIAN_ROOTFS = join(process.env.STRATUM_TEST_DEBIAN ?? '/var/tmp/stratum-test-debian', 'rootfs');
const BUILD_TIMEOUT_MS = 10 * 60 * 1000;
const SUFFIX = `${process.pid}`;

if (process.getuid?.() !== 0) {
  console.error('corpus-parity needs root (overlay mounts, RUN namespaces, the Docker socket)');
  process.exit(2);
}
if (!existsSync(CORPORA)) {
  console.error(`no corpora at ${CORPORA} (set CORPORA)`);
  process.exit(2);
}
if (spawnSync(DEBIAN_DOCKER, ['info'], { stdio: 'ignore' }).status !== 0) {
  console.error(`${DEBIAN_DOCKER} info fails: a Docker daemon is needed`);
  process.exit(2);
}

const work = join('/var/tmp', `stratum-corpus-${SUFFIX}`);
mkdirSync(work, { recursive: true });
const dataDir = join(work, 'data');
const store = new ImageStore(dataDir);
const dockerTags = new Set();

function docker(args, options = {}) {
  return spawnSync(DEBIAN_DOCKER, args, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: BUILD_TIMEOUT_MS,
    ...options,
    env: { ...process.env, DOCKER_BUILDKIT: '1', ...options.env },
  });
}

function mustDocker(args) {
  const result = docker(args);
  if (result.status !== 0) throw new Error(`docker ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/**
 * The two stand-in bases, made once: the busybox of the parity tests (mount points a real base
 * has, so BuildKit 0.8 leaves no mount stubs) plus /etc/nsswitch.conf and /etc/os-release, which
 * the official busybox and alpine images have and cases read; and the Debian rootfs.
 */
const bases = {};

async function makeBusyboxBase() {
  const rootfs = join(work, 'busybox-rootfs');
  mkdirSync(rootfs);
  makeBusyboxRootfs(rootfs);
  for (const sub of ['dev', 'proc', 'sys']) mkdirSync(join(rootfs, sub), { recursive: true });
  writeFileSync(join(rootfs, 'etc/hosts'), '');
  writeFileSync(join(rootfs, 'etc/resolv.conf'), '');
  writeFileSync(join(rootfs, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  writeFileSync(join(rootfs, 'etc/os-release'), 'NAME="stratum corpus busybox"\nID=busybox\n');
  const tag = `${LOCAL_PREFIX}base-busybox:${SUFFIX}`;
  const base = writeBaseImage(rootfs, join(work, 'busybox-base'), tag, {
    createdBy: 'busybox base for the stratum corpus',
  });
  execFileSync(DEBIAN_DOCKER, ['load', '-q', '-i', base.dockerArchive], { stdio: 'ignore' });
  dockerTags.add(tag);
  return { dockerTag: tag, open: () => openOciLayout(base.layout, SUFFIX) };
}

async function makeDebianBase() {
  if (!existsSync(join(DEBIAN_ROOTFS, '..', 'done-2'))) return undefined;
  const tar = join(work, 'debian.tar');
  // /dev's nodes stay out (a base has an empty /dev); an empty /etc/hosts is added, as images have.
  execFileSync('tar', [
    '--sort=name',
    '--numeric-owner',
    '--exclude=./dev/*',
    '-C',
    DEBIAN_ROOTFS,
    '-cf',
    tar,
    '.',
  ]);
  const extra = join(work, 'debian-extra');
  mkdirSync(join(extra, 'etc'), { recursive: true });
  writeFileSync(join(extra, 'etc/hosts'), '');
  if (!existsSync(join(DEBIAN_ROOTFS, 'etc/hosts')))
    execFileSync('tar', [
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      '-C',
      extra,
      '-rf',
      tar,
      './etc/hosts',
    ]);
  const tag = `${LOCAL_PREFIX}base-debian:${SUFFIX}`;
  mustDocker([
    'import',
    '--change',
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    '--change',
    'CMD ["bash"]',
    tar,
    tag,
  ]);
  dockerTags.add(tag);
  const archive = join(work, 'debian.docker.tar');
  mustDocker(['save', '-o', archive, tag]);
  rmSync(tar);
  return { dockerTag: tag, open: () => openImage(`docker-archive:${archive}`) };
}

const tagged = new Set();

/** Gives `name` to the stand-in in Docker and in stratum's store. */
async function ensureLocal(name, base) {
  if (tagged.has(name)) return;
  mustDocker(['tag', base.dockerTag, name]);
  dockerTags.add(name);
  const source = await base.open();
  try {
    await store.put(source, [name]);
  } finally {
    await source.close();
  }
  tagged.add(name);
}

/** An image BuildKit built (a case another case builds on), under `name` on both sides. */
async function adoptDockerImage(tag, name) {
  mustDocker(['tag', tag, name]);
  dockerTags.add(name);
  const archive = join(work, `adopt-${tagged.size}.docker.tar`);
  mustDocker(['save', '-o', archive, name]);
  const source = await openImage(`docker-archive:${archive}`);
  try {
    await store.put(source, [name]);
  } finally {
    await source.close();
  }
  tagged.add(name);
}

function buildkitBuild(c, dockerfile, tag) {
  const args = ['build', '--network=none', '--no-cache', '-q', '-f', dockerfile, '-t', tag];
  for (const [key, value] of Object.entries(c.args ?? {})) args.push('--build-arg', `${key}=${value}`);
  if (c.target !== undefined) args.push('--target', c.target);
  args.push(c.context);
  const result = docker(args);
  if (result.status === 0) dockerTags.add(tag);
  return result;
}

async function stratumBuild(c, dockerfile, snapshotter, out) {
  try {
    await buildImage({
      contextDir: c.context,
      dockerfilePath: dockerfile,
      dockerfile: readFileSync(dockerfile),
      dataDir,
      cacheDir: join(work, `cache-${snapshotter}`),
      noCache: true,
      network: 'none',
      snapshotter,
      outputs: [`oci:${out}:latest`],
      buildArgs: c.args ?? {},
      ...(c.target === undefined ? {} : { target: c.target }),
      tmpDir: join(work, 'tmp'),
      signal: AbortSignal.timeout(BUILD_TIMEOUT_MS),
    });
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * The scan snapshotter cannot see a file a step opened for writing and left unchanged (a lock
 * file), which overlayfs, and so BuildKit, puts in the layer: a documented limitation (README,
 * "Docker's results"), not counted as a difference on that snapshotter.
 */
const SCAN_REEMITTED = 'scan: only entries BuildKit re-emitted unchanged (a lock file), as documented';

function onlyReemitted(diff) {
  return (
    diff.historyMismatch === undefined &&
    diff.config.length === 0 &&
    diff.steps.every((step) => step.differences.every((d) => d.kind === 'reemitted' || d.kind === 'resolved'))
  );
}

/** The first difference of a diff, on one line: the step and what differs there, or the config. */
function firstDifference(diff) {
  const lines = formatImageDiff(diff, 1).split('\n');
  const note = lines.find((line) => line.startsWith('note: '));
  if (note !== undefined) return note.slice(6);
  let step = '';
  for (const line of lines) {
    if (line.startsWith('step ')) step = line.replace(/\s+\(same\)$/, '');
    else if (/^ {2}[-+~!=]/.test(line)) return `${step} ${line.trim()}`;
    else if (line.startsWith('config:') && line !== 'config: same') {
      const field = lines[lines.indexOf(line) + 1];
      return `config ${field?.trim()}`;
    }
  }
  return lines.find((line) => line.startsWith('result:')) ?? 'different';
}

function errorLine(text) {
  const lines = String(text)
    .trim()
    .split('\n')
    .filter((line) => line.trim() !== '');
  return (lines.find((line) => /error|failed|not found|denied/i.test(line)) ?? lines.at(-1) ?? '')
    .trim()
    .slice(0, 160);
}

async function runCase(c, index) {
  if (c.skip !== undefined) return { status: 'skip', detail: c.skip };
  let text = readFileSync(c.dockerfile, 'utf8');
  for (const [from, to] of c.replace ?? []) text = text.split(from).join(to);
  const extraTags = [...(c.tags ?? [])];
  if (c.baseFrom !== undefined) {
    const ref = /^\s*from\s+(\S+)/im.exec(text)?.[1];
    const name = `${LOCAL_PREFIX}${c.baseFrom.toLowerCase().replace(/[^a-z0-9]+/g, '-')}:latest`;
    text = text.split(ref).join(name);
    const dependency = results.find((r) => r.case.id.endsWith(`/${c.baseFrom}`));
    if (dependency?.buildkitTag === undefined)
      return { status: 'skip', detail: `its base, ${c.baseFrom}, did not build with BuildKit` };
    if (!tagged.has(name)) await adoptDockerImage(dependency.buildkitTag, name);
  }
  const rewritten = rewriteDockerfile(text);
  if (rewritten.unknown.length > 0)
    return {
      status: 'skip',
      detail: `needs ${rewritten.unknown.join(', ')}, which no local image stands in for`,
    };
  const names = localNames(rewritten.text, c.args ?? {}, extraTags);
  for (const name of names) {
    const kind = standInFor(name);
    if (bases[kind] === undefined)
      return { status: 'skip', detail: `needs the ${kind} stand-in, which is missing` };
    await ensureLocal(name, bases[kind]);
  }
  const dir = join(work, 'cases', String(index));
  mkdirSync(dir, { recursive: true });
  const dockerfile = join(dir, 'Dockerfile');
  writeFileSync(dockerfile, rewritten.text);
  if (existsSync(`${c.dockerfile}.dockerignore`))
    copyFileSync(`${c.dockerfile}.dockerignore`, `${dockerfile}.dockerignore`);
  const base =
    names
      .map((name) => standInFor(name))
      .sort()
      .filter((k, i, all) => all.indexOf(k) === i)
      .join('+') || 'scratch';

  const tag = `${LOCAL_PREFIX}case-${index}:${SUFFIX}`;
  const buildkit = buildkitBuild(c, dockerfile, tag);
  const buildkitOk = buildkit.status === 0;
  const perSnapshotter = [];
  for (const snapshotter of SNAPSHOTTERS) {
    const out = join(dir, `out-${snapshotter}`);
    const error = await stratumBuild(c, dockerfile, snapshotter, out);
    let status;
    let detail = '';
    if (!buildkitOk && error !== undefined) {
      status = 'both failed';
      detail = `BuildKit: ${errorLine(buildkit.stderr)}; stratum: ${errorLine(error.message ?? error)}`;
    } else if (!buildkitOk) {
      status = 'BuildKit failed only';
      detail = errorLine(buildkit.stderr);
    } else if (error !== undefined) {
      status = 'stratum failed only';
      detail = errorLine(error.message ?? error);
    } else {
      const archive = join(dir, 'buildkit.docker.tar');
      if (!existsSync(archive)) mustDocker(['save', '-o', archive, tag]);
      const a = await openImage(`docker-archive:${archive}`);
      const b = await openImage(`oci:${out}:latest`);
      try {
        const diff = await diffImages(a, b, {});
        status = diff.equivalent
          ? 'equivalent'
          : snapshotter === 'scan' && onlyReemitted(diff)
            ? 'equivalent'
            : 'different';
        if (status === 'equivalent' && !diff.equivalent) detail = SCAN_REEMITTED;
        if (status === 'different') {
          detail = firstDifference(diff);
          writeFileSync(join(dir, `diff-${snapshotter}.txt`), formatImageDiff(diff));
        }
      } finally {
        await a.close();
        await b.close();
      }
    }
    perSnapshotter.push({ snapshotter, status, detail });
  }
  const statuses = new Set(perSnapshotter.map((s) => s.status));
  const first =
    perSnapshotter.find((s) => s.status !== 'equivalent' && s.status !== 'both failed') ?? perSnapshotter[0];
  const status =
    statuses.size === 1
      ? first.status
      : `${perSnapshotter.map((s) => `${s.snapshotter}: ${s.status}`).join(', ')}`;
  return {
    status,
    base,
    detail:
      first.detail ||
      perSnapshotter
        .map((s) => s.detail)
        .filter(Boolean)
        .join('; '),
    agree: perSnapshotter.every((s) => s.status === 'equivalent' || s.status === 'both failed'),
    buildkitTag: buildkitOk ? tag : undefined,
    dir,
  };
}

const results = [];
try {
  bases.busybox = await makeBusyboxBase();
  bases.debian = await makeDebianBase();
  if (bases.debian === undefined)
    console.error(`no Debian rootfs at ${DEBIAN_ROOTFS}: Debian-based cases are skipped`);
  mkdirSync(join(work, 'tmp'), { recursive: true });
  const cases = corpusCases(CORPORA);
  for (const [index, c] of cases.entries()) {
    // A case another case builds on runs even when not picked.
    const needed = cases.some(
      (other) => other.baseFrom !== undefined && c.id.endsWith(`/${other.baseFrom}`) && PICK?.test(other.id),
    );
    if (PICK !== undefined && !PICK.test(c.id) && !needed) continue;
    const started = Date.now();
    let result;
    try {
      result = await runCase(c, index);
    } catch (error) {
      result = { status: 'error', detail: errorLine(error.stack ?? error), agree: false };
    }
    results.push({ case: c, ...result });
    console.error(
      `${c.id}: ${result.status}${result.detail ? ` (${result.detail})` : ''} [${((Date.now() - started) / 1000).toFixed(1)} s]`,
    );
  }
} finally {
  if (process.env.CORPUS_KEEP === undefined) {
    if (dockerTags.size > 0) spawnSync(DEBIAN_DOCKER, ['rmi', '-f', ...dockerTags], { stdio: 'ignore' });
    rmSync(work, { recursive: true, force: true });
  } else console.error(`kept ${work} and the Docker images ${LOCAL_PREFIX}*`);
}

const cell = (text) => String(text).replaceAll('|', '\\|');
console.log(`| case | base | result (${SNAPSHOTTERS.join(', ')}) | first difference, error or reason |`);
console.log('|---|---|---|---|');
for (const r of results)
  console.log(`| ${cell(r.case.id)} | ${r.base ?? ''} | ${cell(r.status)} | ${cell(r.detail ?? '')} |`);
const built = results.filter((r) => r.status !== 'skip');
const agree = built.filter((r) => r.agree);
const bothFailed = built.filter((r) => r.status === 'both failed');
const count = (status) => built.filter((r) => r.status === status).length;
console.log('');
console.log(
  `${agree.length} of ${built.length} equivalent (${bothFailed.length} of them refused by both); ` +
    `${count('different')} different, ${count('BuildKit failed only')} failed in BuildKit only, ` +
    `${count('stratum failed only')} failed in stratum only, ${built.length - agree.length - count('different') - count('BuildKit failed only') - count('stratum failed only')} other; ` +
    `${results.length - built.length} skipped`,
);
