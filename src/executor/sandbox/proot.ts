import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { prootMissing, prootPath } from './isolation.js';
import { MountPointLedger } from './mount-points.js';
import { existingPathInRoot } from './root-path.js';
import { tooLongForExec, ulimitArgs } from './exec-limits.js';
import { syscallNumbers } from './init.js';
import { compileSeccomp } from './seccomp.js';
import { pastProot } from './seccomp-profile.js';
import type { SandboxOptions, SandboxResult, SandboxSpec } from './types.js';

/**
 * Runs one RUN step under proot, for containers where no namespace can be made (Docker's default
 * seccomp profile refuses unshare and clone with namespace flags). proot intercepts the step's
 * system calls with ptrace and resolves every path inside the rootfs (`-r`), with the
 * container's own /proc, /dev and /sys bound in (`-b`); the step runs as the USER's uid, gid and
 * groups for real (setpriv), so the files it makes have their owners, and proot's end report of the command ends
 * whatever it left running (its process group). No mount is made: the step's mounts are proot bindings.
 *
 * What the step gets differs from the namespaces mode, and the log says so: the container's
 * network (`--network none` is refused), hostname and PID numbering; the container's own
 * seccomp profile, capabilities and masked paths are the floor (under Docker's defaults, the
 * same as the namespaces mode's). Read-only bind mounts are copies (proot cannot make a
 * binding read-only), and secrets are files in /dev/shm (the container's tmpfs), removed when
 * the step ends.
 */
export async function runInProot(spec: SandboxSpec, options: SandboxOptions = {}): Promise<SandboxResult> {
  const proot = prootPath();
  if (proot === undefined) throw prootMissing('RUN in a container without namespaces');
  if (spec.network === 'none') {
    throw new StratumError(
      'UNSUPPORTED',
      'RUN --network none needs a network namespace, which cannot be made here (no namespaces: RUN runs under proot on the container network); build with --network host or default',
    );
  }
  if (spec.insecure === true) {
    // A Dockerfile that asked for more than the container has must not run with less, silently.
    throw new StratumError(
      'UNSUPPORTED',
      'RUN --security=insecure needs every capability, which a step under proot cannot have (no namespaces here: the container is the sandbox); run the container with seccomp=unconfined, or drop the flag',
    );
  }
  const me = process.getuid?.() ?? 0;
  if (me !== 0) {
    // proot can only fake root (-0), and a faked chown would put the wrong owners in the layer.
    throw new StratumError(
      'UNSUPPORTED',
      `RUN needs root here: stratum runs as uid ${me} in a container where no user namespace can be made, so a step could neither run as its USER nor record the owners it gives; run the container as root (Kubernetes runAsUser: 0, default capabilities), or allow user namespaces (seccomp Unconfined)`,
    );
  }
  const { signal, onOutput } = options;
  if (signal?.aborted) throw aborted(spec);
  const ledger = new MountPointLedger(spec.rootfs);
  const scratch = await mkdtemp(join(options.scratchParent ?? tmpdir(), 'stratum-proot-'));
  // Secrets on the container's memory-backed /dev/shm when there is one, never in the rootfs.
  const secretsDir = await mkdtemp(join(await memoryBacked(), 'stratum-secrets-'));
  try {
    const bindings: string[] = [];
    const bind = (source: string, target: string): void => {
      bindings.push('-b', `${source}:${target}`);
    };
    for (const path of ['/proc', '/dev', '/sys']) {
      await ledger.ensure(path, 'directory');
      bind(path, path);
    }
    for (const [path, content] of [
      ['/etc/hosts', spec.etcHosts],
      ['/etc/resolv.conf', spec.etcResolvConf],
      ['/etc/hostname', spec.etcHostname],
    ] as const) {
      const file = join(scratch, posix.basename(path));
      await writeFile(file, content, { mode: 0o644 });
      await ledger.ensure(path, 'file');
      bind(file, path);
    }
    // apt's download methods drop to the _apt user, and a traced process that changes its uid is
    // out of reach of a proot without CAP_SYS_PTRACE: apt-get update would hang. The container is
    // the sandbox here; a file bound into apt.conf.d (gone with the step, never in the layer)
    // keeps the methods root.
    const aptConfig = await existingPathInRoot(spec.rootfs, '/etc/apt/apt.conf.d');
    if (aptConfig !== undefined && (await stat(aptConfig)).isDirectory()) {
      const file = join(scratch, 'apt-proot.conf');
      await writeFile(file, 'APT::Sandbox::User "root";\n', { mode: 0o644 });
      await ledger.ensure(APT_SNIPPET, 'file');
      bind(file, APT_SNIPPET);
    }
    for (const [index, mount] of spec.mounts.entries()) {
      switch (mount.kind) {
        case 'bind': {
          const isDirectory = (await stat(mount.source)).isDirectory();
          await ledger.ensure(mount.target, isDirectory ? 'directory' : 'file');
          if (mount.readonly) {
            // Writes to a copy are thrown away; the source stays as it was. GNU `cp -a`, not
            // fs.cp: the copy keeps owners (a stage's files owned 5:5 read as 5:5), times, hard
            // links, and FIFOs or devices as what they are.
            const copy = join(scratch, `bind-${index}`);
            await copyPreserving(mount.source, copy, mount.target);
            bind(copy, mount.target);
          } else bind(mount.source, mount.target);
          break;
        }
        case 'tmpfs': {
          const dir = join(scratch, `tmpfs-${index}`);
          await mkdir(dir, { mode: 0o1777 });
          await chmod(dir, 0o1777);
          await ledger.ensure(mount.target, 'directory');
          bind(dir, mount.target);
          break;
        }
        case 'secret': {
          const file = join(secretsDir, `secret-${index}`);
          await writeFile(file, mount.content, { mode: 0o600 });
          await chown(file, mount.uid ?? 0, mount.gid ?? 0);
          await chmod(file, mount.mode ?? 0o400);
          await ledger.ensure(mount.target, 'file');
          bind(file, mount.target);
          break;
        }
      }
    }
    ledger.sealSetup();
    if (spec.uid !== 0) {
      // proot runs the step as its user on the real paths: that user must be able to reach them.
      const reached = [spec.rootfs, scratch, secretsDir, ...bindingSources(bindings)];
      await openForSearch(reached, [
        scratch,
        secretsDir,
        ...(options.searchableRoot === undefined ? [] : [options.searchableRoot]),
      ]);
      await checkSearchable(reached, spec);
    }
    try {
      return await launch(spec, proot, bindings, signal, onOutput);
    } finally {
      await ledger.restore();
    }
  } finally {
    await rm(secretsDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

function bindingSources(bindings: readonly string[]): string[] {
  return bindings
    .filter((_, index) => index % 2 === 1)
    .map((binding) => binding.slice(0, binding.lastIndexOf(':')));
}

/** The directories from `/` down to `path`'s parent, and `path` itself when it is a directory. */
async function directoriesOn(path: string): Promise<string[]> {
  const parts = path.split('/').filter((part) => part !== '');
  const dirs = ['/'];
  for (let i = 1; i <= parts.length; i++) dirs.push(`/${parts.slice(0, i).join('/')}`);
  const last = await stat(path).catch(() => undefined);
  return last?.isDirectory() === true ? dirs : dirs.slice(0, -1);
}

/**
 * Lets others search (o+x, not list) the directories this build made on the way to what the step
 * must reach: its workspace, scratch and secrets directories, whose random names are not listable.
 */
async function openForSearch(paths: readonly string[], ownRoots: readonly string[]): Promise<void> {
  for (const path of paths) {
    for (const dir of await directoriesOn(path)) {
      if (!ownRoots.some((root) => dir === root || dir.startsWith(`${root}/`))) continue;
      const info = await stat(dir);
      if ((info.mode & 0o001) === 0) await chmod(dir, (info.mode & 0o7777) | 0o001);
    }
  }
}

/** Refuses in one line when a directory above what the step needs is closed to its user. */
async function checkSearchable(paths: readonly string[], spec: SandboxSpec): Promise<void> {
  const groups = new Set([spec.gid, ...spec.additionalGids]);
  for (const path of paths) {
    for (const dir of await directoriesOn(path)) {
      const info = await stat(dir);
      const bit = info.uid === spec.uid ? 0o100 : groups.has(info.gid) ? 0o010 : 0o001;
      if ((info.mode & bit) === 0) {
        throw new StratumError(
          'UNSUPPORTED',
          `RUN as uid ${spec.uid} under proot runs on the real paths, and ${dir} (mode ${(info.mode & 0o7777).toString(8)}) is closed to that user; keep stratum's directories where every user may search them, e.g. STRATUM_CACHE_DIR=/var/cache/stratum`,
        );
      }
    }
  }
}

const APT_SNIPPET = '/etc/apt/apt.conf.d/00stratum-proot';

async function memoryBacked(): Promise<string> {
  const shm = await stat('/dev/shm').catch(() => undefined);
  return shm?.isDirectory() === true ? '/dev/shm' : tmpdir();
}

function launch(
  spec: SandboxSpec,
  proot: string,
  bindings: readonly string[],
  signal: AbortSignal | undefined,
  onOutput: SandboxOptions['onOutput'],
): Promise<SandboxResult> {
  const groups =
    spec.additionalGids.length === 0 ? ['--clear-groups'] : ['--groups', spec.additionalGids.join(',')];
  const args = [
    '--pdeathsig',
    'KILL',
    '--reuid',
    String(spec.uid),
    '--regid',
    String(spec.gid),
    ...groups,
    '--',
    ...ulimitArgs(spec.ulimits ?? []),
    // no_new_privs, a filter refusing what proot cannot translate, runc's default umask; then proot (setpriv and
    // perl exec: one pid). A traced step cannot gain privileges through a setuid program anyway.
    'perl',
    '-e',
    prootLauncher,
    syscallNumbers()[4]!,
    prootFilter().toString('hex'),
    proot,
    // Verbose level 1 reports each tracee's end: how the step's own command is told apart.
    '-v',
    '1',
    '-r',
    spec.rootfs,
    '-w',
    spec.cwd,
    ...bindings,
    ...spec.argv,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: what the step leaves running is killed with it.
      detached: true,
      // Exactly the step's environment: proot looks argv[0] up in the step's PATH, in the rootfs.
      env: Object.fromEntries(
        spec.env.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
      ),
    });
    const group = child.pid;
    const killGroup = (): void => {
      if (group === undefined) return;
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    // proot waits for every tracee and then exits with the last one's status; the step is its
    // first child (the command), so its end, as proot reports it, is the step's end.
    let command: number | undefined;
    let ended: SandboxResult | undefined;
    const findCommand = (): void => {
      if (command !== undefined || group === undefined) return;
      try {
        const first = readFileSync(`/proc/${group}/task/${group}/children`, 'utf8').trim().split(/\s+/)[0];
        if (first !== undefined && first !== '') command = Number(first);
      } catch {
        // proot has not forked yet, or is gone
      }
    };
    const poll = setInterval(findCommand, 2);
    let stderrTail = '';
    let pending = '';
    const onProotLine = (line: string): boolean => {
      const match = /^proot info: pid (\d+): (exited with status|terminated with signal) (\d+)/.exec(line);
      if (match === null) return /^proot info: /.test(line);
      findCommand();
      if (Number(match[1]) === command && ended === undefined) {
        const value = Number(match[3]);
        if (match[2] === 'exited with status') ended = { exitCode: value };
        else {
          const name = signalName(value);
          ended = name === undefined ? { exitCode: 128 + value } : { exitCode: 128 + value, signal: name };
        }
        // Whatever the step left running (a daemon it started) ends with it, as in a PID namespace.
        killGroup();
      }
      return true;
    };
    child.stdout.on('data', (chunk: Buffer) => onOutput?.(chunk, 'stdout'));
    child.stderr.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      const kept = lines.filter((line) => !onProotLine(line));
      if (kept.length === 0) return;
      const text = `${kept.join('\n')}\n`;
      stderrTail = (stderrTail + text).slice(-2000);
      onOutput?.(Buffer.from(text), 'stderr');
    });
    let wasAborted = false;
    const onAbort = (): void => {
      wasAborted = true;
      killGroup();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      clearInterval(poll);
      signal?.removeEventListener('abort', onAbort);
      const code = errnoCode(error);
      reject(
        code === 'ENOENT'
          ? new StratumError('UNSUPPORTED', 'RUN under proot needs setpriv (Debian package util-linux)')
          : code === 'E2BIG'
            ? tooLongForExec(spec)
            : error,
      );
    });
    child.on('close', (code, killedBy) => {
      clearInterval(poll);
      signal?.removeEventListener('abort', onAbort);
      if (pending !== '' && !onProotLine(pending)) onOutput?.(Buffer.from(pending), 'stderr');
      if (wasAborted) {
        reject(aborted(spec));
        return;
      }
      if (ended !== undefined) {
        resolve(ended);
        return;
      }
      // proot reports a command it could not start on stderr with its own prefix.
      if (code !== 0 && /^proot (error|warning): /m.test(stderrTail)) {
        reject(
          new StratumError(
            'BUILD_FAILED',
            `RUN ${JSON.stringify(spec.argv)} could not start: ${stderrTail.trim().split('\n').pop() ?? ''}`,
          ),
        );
        return;
      }
      if (killedBy !== null) {
        resolve({ exitCode: 128 + constants.signals[killedBy], signal: killedBy });
        return;
      }
      resolve({ exitCode: code ?? 1 });
    });
  });
}

const prootLauncher = String.raw`
my ($prctl, $filter) = (0 + shift @ARGV, pack('H*', shift @ARGV));
syscall($prctl, 38, 1, 0, 0, 0) == 0 or die "stratum: no_new_privs: $!\n";
my $fprog = pack('S x![P] P', length($filter) / 8, $filter);
syscall($prctl, 22, 2, $fprog, 0, 0) == 0 or die "stratum: seccomp filter: $!\n";
umask(022);
{ no warnings; exec { $ARGV[0] } @ARGV; }
die "stratum: exec $ARGV[0]: $!\n";
`;

let compiledFilter: Buffer | undefined;

function prootFilter(): Buffer {
  compiledFilter ??= compileSeccomp(pastProot, { capabilities: [] });
  return compiledFilter;
}

function signalName(value: number): NodeJS.Signals | undefined {
  return (Object.keys(constants.signals) as NodeJS.Signals[]).find(
    (name) => constants.signals[name] === value,
  );
}

function aborted(spec: SandboxSpec): StratumError {
  return new StratumError('ABORTED', `RUN ${JSON.stringify(spec.argv)} was aborted`);
}

/** `cp -a` of a bind mount's source, for a copy the step may write to; `target` names it in errors. */
function copyPreserving(source: string, copy: string, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('cp', ['-a', '--', source, copy], (error, _stdout, stderr) => {
      if (error === null) resolve();
      else
        reject(
          new StratumError(
            'BUILD_FAILED',
            `bind mount ${target}: its source could not be copied for proot (cp: ${stderr.trim().split('\n')[0] ?? String(error.code)})`,
          ),
        );
    });
  });
}
