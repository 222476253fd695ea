// RUN isolation overhead: the wall time of a step whose command is `true`, from the call to its
// result, with stratum's sandbox (unshare + Perl init) and the peers installed here (a plain
// process spawn, raw `unshare ... chroot`, bubblewrap with comparable mounts, runc and crun with
// their default spec, `docker run` when a
// daemon and a busybox image are there). Run: npm run build && node bench/sandbox.js
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runInSandbox } from '../dist/executor/sandbox/run.js';

const run = promisify(execFile);
const rounds = Number(process.env.ROUNDS ?? 40);

function has(command) {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function busyboxRootfs(parent, full) {
  const rootfs = join(parent, full ? 'full' : 'bare');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n')) {
    if (applet !== '' && applet !== 'busybox') symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  if (full) {
    for (const d of ['etc', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(join(rootfs, d));
    for (const f of ['hosts', 'resolv.conf', 'hostname']) writeFileSync(join(rootfs, 'etc', f), '');
  }
  return rootfs;
}

async function measure(name, once) {
  for (let i = 0; i < 3; i++) await once();
  const times = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    await once();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const pick = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  console.log(
    `${name.padEnd(58)} mean ${mean.toFixed(1).padStart(6)} ms   p50 ${pick(0.5).toFixed(1).padStart(6)}   p95 ${pick(0.95).toFixed(1).padStart(6)}`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'stratum-bench-sandbox-'));
try {
  const full = busyboxRootfs(dir, true);
  const bare = busyboxRootfs(dir, false);
  const etc = join(dir, 'etc');
  mkdirSync(etc);
  for (const f of ['hosts', 'resolv.conf', 'hostname']) writeFileSync(join(etc, f), '');
  const spec = (rootfs, network = 'host') => ({
    rootfs,
    argv: ['/bin/true'],
    env: ['PATH=/bin'],
    cwd: '/',
    uid: 0,
    gid: 0,
    additionalGids: [],
    hostname: 'bench',
    network,
    mounts: [],
    etcHosts: '127.0.0.1 localhost\n',
    etcResolvConf: '',
    etcHostname: 'bench\n',
  });

  console.log(`per-step overhead of a \`true\` step, ${rounds} rounds after 3 warm-up runs\n`);
  await measure('node spawn of /bin/true on the host (no isolation)', () => run('/bin/true'));
  await measure('unshare -m -p -f -u -i --root (no /proc, /dev, /sys, /etc)', () =>
    run('unshare', [
      '--mount',
      '--pid',
      '--fork',
      '--uts',
      '--ipc',
      '--propagation',
      'private',
      `--root=${full}`,
      '/bin/true',
    ]),
  );
  if (has('bwrap')) {
    const bwrap = (rootfs, extra = []) => [
      ...['--bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '--ro-bind', '/sys', '/sys'],
      ...['--bind', join(etc, 'hosts'), '/etc/hosts', '--bind', join(etc, 'resolv.conf'), '/etc/resolv.conf'],
      ...['--bind', join(etc, 'hostname'), '/etc/hostname'],
      ...[
        '--unshare-pid',
        '--unshare-uts',
        '--unshare-ipc',
        '--hostname',
        'bench',
        '--die-with-parent',
        ...extra,
        '/bin/true',
      ],
    ];
    await measure('bwrap, same mounts (full base; no cleanup, no uid switch)', () =>
      run('bwrap', bwrap(full)),
    );
    await measure('bwrap, same mounts, --unshare-net', () => run('bwrap', bwrap(full, ['--unshare-net'])));
  }
  await measure('stratum runInSandbox, base has every mount point', () => runInSandbox(spec(full)));
  await measure('stratum runInSandbox, network none', () => runInSandbox(spec(full, 'none')));
  await measure('stratum runInSandbox, bare base (mount points made + removed)', () =>
    runInSandbox(spec(bare)),
  );
  // The OCI runtimes BuildKit and buildah hand a generated spec to: runc's and crun's default
  // spec (namespaces, masked and read-only paths, a device cgroup; no seccomp section) on the
  // same rootfs. crun 1.8 refuses hosts with cgroup v1 controllers in hybrid mode: then it prints why.
  for (const runtime of ['runc', 'crun']) {
    if (!has(runtime)) continue;
    const bundle = join(dir, runtime);
    mkdirSync(bundle);
    execFileSync('cp', ['-a', full, join(bundle, 'rootfs')]);
    execFileSync(runtime, ['spec'], { cwd: bundle });
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    config.process.terminal = false;
    config.process.args = ['/bin/true'];
    config.root = { path: 'rootfs', readonly: false };
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    let n = 0;
    const once = () => run(runtime, ['run', '-b', bundle, `bench-${runtime}-${process.pid}-${n++}`]);
    try {
      await once();
    } catch (error) {
      console.log(
        `${runtime}: ${String(error.stderr ?? error)
          .trim()
          .split('\n')
          .pop()}`,
      );
      continue;
    }
    await measure(`${runtime} run, its default spec (no seccomp)`, once);
  }
  if (has('docker')) {
    try {
      execFileSync('docker', ['image', 'inspect', 'busybox'], { stdio: 'ignore' });
      await measure('docker run --rm busybox true', () => run('docker', ['run', '--rm', 'busybox', 'true']));
    } catch {
      console.log('docker: no local busybox image, skipped');
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
