import { trace } from '../../util/trace.js';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { dockerDefaultCapabilities, encodeOps, initProgram, syscallNumbers, type InitOp } from './init.js';
import {
  canSetGroups,
  checkSpecIds,
  chooseIdMapping,
  gidMapped,
  unshareMappingArgs,
  type IdMapping,
} from './id-mapping.js';
import { MountPointLedger } from './mount-points.js';
import type { Isolation, IsolationMode } from './isolation.js';
import { chooseIsolation, warmIsolation } from './isolation.js';
import { runInProot } from './proot.js';
import { tooLongForExec, ulimitArgs } from './exec-limits.js';
import { compileSeccomp } from './seccomp.js';
import { dockerDefaultProfile, noBlockDevices } from './seccomp-profile.js';
import { acquirePrivateNetwork } from './network.js';
import {
  namespaceWords,
  refillSpareInit,
  spareInitArgs,
  spawnInitProcess,
  takeSpareInit,
} from './spare-init.js';
import type { SandboxMount, SandboxOptions, SandboxResult, SandboxSpec } from './types.js';

// mount(2) flags
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_STRICTATIME = 1 << 24;

/** Paths the sandbox mounts itself; a user mount may not sit inside one of them. */
const systemMountPoints = ['/proc', '/dev', '/sys', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

/**
 * Host device nodes bound into the step's /dev (bind, not mknod: works in a user namespace). They
 * are the only device nodes a step can open: every other mount it sees is `nodev`.
 */
const deviceNodes = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** Docker's default spec (moby oci/defaults.go, Docker 28): paths hidden from a step... */
export const maskedPaths: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
];

/** ...and paths it may read but not write. */
export const readonlyPaths: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/**
 * The isolation modes, one implementation each behind the same signature; isolation.ts probes
 * which one this environment allows and the build logs its choice (`RUN isolation: proot`), as
 * snapshot/choose.ts does for the snapshotter.
 */
const ISOLATIONS: Readonly<Record<IsolationMode, Isolation>> = {
  namespaces: { mode: 'namespaces', run: runInNamespaces },
  proot: { mode: 'proot', run: runInProot },
};

/** Runs one RUN step under the isolation `options.isolation` names (default: namespaces). */
export async function runInSandbox(spec: SandboxSpec, options: SandboxOptions = {}): Promise<SandboxResult> {
  validate(spec);
  return ISOLATIONS[options.isolation ?? 'namespaces'].run(spec, options);
}

/**
 * The namespaces mode: `unshare` makes mount, PID, UTS and IPC namespaces (and a network namespace
 * for `none`, a user namespace when not root), the Perl init (./init.ts) mounts /proc, /dev,
 * /sys, the /etc files and the step's mounts, pivots into the rootfs, drops to Docker's
 * capability set and the step's uid/gid/groups, and execs the command as PID 1. When PID 1
 * exits, the kernel kills everything else in the namespace, and the mount namespace (with every
 * mount in it) goes away with its last process; nothing is ever mounted in the host's namespace.
 * Mount points the rootfs lacked are created before and removed after (./mount-points.ts).
 */
async function runInNamespaces(spec: SandboxSpec, options: SandboxOptions): Promise<SandboxResult> {
  if (options.signal?.aborted) throw abortError(spec);
  const mapping = await chooseIdMapping();
  checkSpecIds(spec, mapping);

  const ledger = new MountPointLedger(spec.rootfs);
  const scratchParent = options.scratchParent ?? process.env['STRATUM_TMPDIR'] ?? tmpdir();
  trace('sandbox: start');
  const scratch = options.scratchDir ?? mkdtempSync(join(scratchParent, 'stratum-run-'));
  // A failure of the step itself (a missing setpriv, the init refusing a mount) is what the
  // user must read; one of the cleanup after it (restoring mount-point mtimes, which needs the
  // Perl helper) must not replace it.
  let outcome: { readonly result: SandboxResult } | { readonly error: unknown };
  try {
    outcome = { result: await runPrepared(spec, options, mapping, ledger, scratch) };
  } catch (error) {
    outcome = { error };
  }
  try {
    trace('sandbox: exited');
    await ledger.restore();
  } catch (cleanupError) {
    if ('result' in outcome) outcome = { error: cleanupError };
  } finally {
    if (options.scratchDir === undefined) rmSync(scratch, { recursive: true, force: true });
  }
  trace('sandbox: cleaned');
  if ('error' in outcome) throw outcome.error;
  return outcome.result;
}

/** The step between its mount points' creation and their removal. */
async function runPrepared(
  spec: SandboxSpec,
  options: SandboxOptions,
  mapping: IdMapping,
  ledger: MountPointLedger,
  scratch: string,
): Promise<SandboxResult> {
  const { signal, onOutput } = options;
  const network = spec.network === 'default' ? await acquirePrivateNetwork() : undefined;
  try {
    // The init is a spare that has waited for a step (spare-init.ts), or a process chain that
    // starts now; either waits for its operations on fd 5 while they are prepared here. The
    // rootfs is mounted before its namespaces are made (a spare makes them when its operations
    // come, the chain at once); the mount points prepare() creates are plain entries of that
    // rootfs, which the new mount namespace sees like any file.
    const init = startInit(spec, mapping, signal, onOutput, network?.path);
    trace('sandbox: init started');
    let ops: InitOp[];
    try {
      ops = await prepare(spec, ledger, scratch, mapping);
      ledger.sealSetup();
    } catch (error) {
      await init.cancel();
      throw error;
    }
    init.send(ops);
    trace('sandbox: ops sent');
    let outcome = await init.outcome;
    if (init.spare && diedWaiting(outcome)) {
      // A spare killed while it waited (before it read a word): nothing was done, so a fresh
      // init does the step. (Node may learn of that death only after the spare was taken.)
      const fresh = startInit(spec, mapping, signal, onOutput, network?.path, false);
      fresh.send(ops);
      outcome = await fresh.outcome;
    }
    return interpret(spec, outcome, mapping);
  } finally {
    network?.release();
  }
}

function validate(spec: SandboxSpec): void {
  if (spec.argv.length === 0 || spec.argv[0] === '') {
    throw new StratumError('BUILD_FAILED', 'RUN has no command to run');
  }
  if (!spec.cwd.startsWith('/'))
    throw new StratumError('BUILD_FAILED', `RUN working directory ${spec.cwd} is not absolute`);
  const targets: string[] = [...systemMountPoints];
  for (const mount of spec.mounts) {
    if (!mount.target.startsWith('/') || posix.normalize(mount.target) === '/') {
      throw new StratumError(
        'BUILD_FAILED',
        `RUN --mount target ${mount.target} is not an absolute path below /`,
      );
    }
    const target = posix.normalize(mount.target);
    const outer = targets.find(
      (other) => target === other || target.startsWith(other === '/' ? '/' : `${other}/`),
    );
    if (outer !== undefined) {
      throw new StratumError(
        'UNSUPPORTED',
        `RUN --mount target ${mount.target} lies on or inside ${outer}, which is mounted too`,
      );
    }
    targets.push(target);
  }
}

async function prepare(
  spec: SandboxSpec,
  ledger: MountPointLedger,
  scratch: string,
  mapping: IdMapping,
): Promise<InitOp[]> {
  const root = spec.rootfs;
  let rootStats;
  try {
    rootStats = statSync(root);
  } catch (error) {
    throw new StratumError(
      'NOT_FOUND',
      `RUN rootfs ${root} cannot be used: ${errnoCode(error) ?? String(error)}`,
    );
  }
  if (!rootStats.isDirectory()) throw new StratumError('NOT_FOUND', `RUN rootfs ${root} is not a directory`);

  // nodev: a device node in the image, or one the step makes, cannot be opened (Docker's device
  // cgroup does that for runc; a cgroup cannot be had rootless or in a container).
  const ops: InitOp[] = [{ op: 'bind', source: root, target: root, readonly: false, nodev: true }];

  const proc = await ledger.ensure('/proc', 'directory');
  ops.push({ op: 'proc', target: proc });

  const dev = await ledger.ensure('/dev', 'directory');
  ops.push({
    op: 'fs',
    fstype: 'tmpfs',
    target: dev,
    flags: MS_NOSUID | MS_NODEV | MS_STRICTATIME,
    data: 'mode=755,size=65536k',
  });
  for (const name of deviceNodes) {
    ops.push(
      { op: 'file', path: `${dev}/${name}` },
      { op: 'bind', source: `/dev/${name}`, target: `${dev}/${name}`, readonly: false },
    );
  }
  ops.push(
    { op: 'mkdir', path: `${dev}/pts`, mode: 0o755 },
    {
      op: 'fs',
      fstype: 'devpts',
      target: `${dev}/pts`,
      flags: MS_NOSUID | MS_NOEXEC,
      // gid=5 (tty) as runc does; a user namespace that maps only the caller cannot name it.
      data: gidMapped(mapping, 5)
        ? 'newinstance,ptmxmode=0666,mode=0620,gid=5'
        : 'newinstance,ptmxmode=0666,mode=0620',
    },
    { op: 'symlink', target: 'pts/ptmx', path: `${dev}/ptmx` },
    { op: 'mkdir', path: `${dev}/shm`, mode: 0o1777 },
    {
      op: 'fs',
      fstype: 'tmpfs',
      target: `${dev}/shm`,
      flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
      data: `mode=1777,size=${Math.ceil((spec.shmSize ?? 64 * 1024 * 1024) / 1024)}k`,
    },
    { op: 'mkdir', path: `${dev}/mqueue`, mode: 0o755 },
    {
      op: 'fs',
      fstype: 'mqueue',
      target: `${dev}/mqueue`,
      flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
      data: '',
    },
    { op: 'symlink', target: '/proc/self/fd', path: `${dev}/fd` },
    { op: 'symlink', target: '/proc/self/fd/0', path: `${dev}/stdin` },
    { op: 'symlink', target: '/proc/self/fd/1', path: `${dev}/stdout` },
    { op: 'symlink', target: '/proc/self/fd/2', path: `${dev}/stderr` },
  );

  ops.push({ op: 'sysfs', target: await ledger.ensure('/sys', 'directory') });
  if (spec.insecure !== true) {
    for (const path of maskedPaths) ops.push({ op: 'mask', path: join(root, path) });
    for (const path of readonlyPaths) ops.push({ op: 'readonly', path: join(root, path) });
  }

  const etcFiles: readonly (readonly [string, string])[] = [
    ['/etc/hosts', spec.etcHosts],
    ['/etc/resolv.conf', spec.etcResolvConf],
    ['/etc/hostname', spec.etcHostname],
  ];
  // The files (the scratch directory's own), then their mount points in the rootfs, with
  // synchronous calls: small, and on every RUN's path.
  const sources = etcFiles.map(([path, content]) => {
    const source = join(scratch, posix.basename(path));
    writeFileSync(source, content, { mode: 0o644 });
    chmodSync(source, 0o644);
    return source;
  });
  for (const [index, [path]] of etcFiles.entries()) {
    ops.push({
      op: 'bind',
      source: sources[index]!,
      target: await ledger.ensure(path, 'file'),
      readonly: false,
    });
  }

  if (spec.mounts.some((mount) => mount.kind === 'secret')) {
    // A tmpfs of the step's mount namespace over an empty directory: secrets live in memory only.
    const secrets = join(scratch, 'secrets');
    await mkdir(secrets, { mode: 0o700 });
    ops.push({
      op: 'fs',
      fstype: 'tmpfs',
      target: secrets,
      flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
      data: 'mode=700,size=16m',
    });
  }
  for (const [index, mount] of spec.mounts.entries()) {
    ops.push(...(await mountOps(mount, index, ledger, scratch)));
  }

  ops.push({ op: 'hostname', name: spec.hostname });
  if (spec.network === 'none') ops.push({ op: 'lo' });
  ops.push(
    { op: 'pivot', root },
    ...(spec.insecure === true
      ? []
      : [
          { op: 'caps', keep: dockerDefaultCapabilities } as const,
          // Last of the privileged operations: the filter refuses mount, pivot_root and the like.
          { op: 'seccomp', filter: dockerSeccompFilter() } as const,
        ]),
    {
      op: 'creds',
      uid: spec.uid,
      gid: spec.gid,
      // A user namespace set up by --map-root-user denies setgroups(2); see README.
      setGroups: canSetGroups(mapping),
      groups: spec.additionalGids,
    },
    { op: 'exec', cwd: spec.cwd, env: spec.env, argv: spec.argv },
  );
  return ops;
}

let seccompFilter: Buffer | undefined;

/**
 * Starts, beside the build's first step, what its first RUN would otherwise wait for: the
 * isolation probe, Docker's seccomp filter (10-15 ms of code run once) and a spare init
 * (spare-init.ts; kept only while a build holds the spares). As root (of the host or of our own
 * user namespace, where no step needs unshare(1)'s id maps) the last two start at once, while the
 * main thread waits for the probe and the first mount (both answered by the overlay helper, which
 * is starting): they are wasted only where the probe then finds no namespaces (proot). Without
 * root, the filter is compiled once the probe has said namespaces.
 */
export function warmRunSandbox(): void {
  warmIsolation();
  if (process.getuid?.() === 0) {
    setImmediate(refillSpareInit);
    setImmediate(dockerSeccompFilter);
    return;
  }
  void chooseIsolation().then(
    (choice) => {
      if (choice.mode === 'namespaces') setImmediate(dockerSeccompFilter);
    },
    () => undefined,
  );
}

/** Docker's default profile for Docker's default capabilities, plus no block devices; compiled once. */
export function dockerSeccompFilter(): Buffer {
  seccompFilter ??= compileSeccomp(
    { ...dockerDefaultProfile, rules: [...noBlockDevices, ...dockerDefaultProfile.rules] },
    { capabilities: dockerDefaultCapabilities },
  );
  return seccompFilter;
}

async function mountOps(
  mount: SandboxMount,
  index: number,
  ledger: MountPointLedger,
  scratch: string,
): Promise<InitOp[]> {
  switch (mount.kind) {
    case 'bind': {
      const source = await stat(mount.source).catch((error: unknown) => {
        throw new StratumError(
          'NOT_FOUND',
          `RUN --mount source ${mount.source} cannot be used: ${errnoCode(error) ?? String(error)}`,
        );
      });
      const target = await ledger.ensure(mount.target, source.isDirectory() ? 'directory' : 'file');
      return [{ op: 'bind', source: mount.source, target, readonly: mount.readonly, nodev: true }];
    }
    case 'tmpfs': {
      const target = await ledger.ensure(mount.target, 'directory');
      const data = mount.size === undefined ? '' : `size=${mount.size}`;
      return [{ op: 'fs', fstype: 'tmpfs', target, flags: MS_NOSUID | MS_NODEV, data }];
    }
    case 'secret': {
      // Written by the init from the secret pipe into the namespace's own tmpfs (see secretOps).
      const file = join(scratch, 'secrets', `secret-${index}`);
      const target = await ledger.ensure(mount.target, 'file');
      // chown inside the namespaces: in a user namespace the ids are the step's, not the host's.
      return [
        { op: 'write', path: file, mode: mount.mode ?? 0o400, length: mount.content.length },
        { op: 'chown', path: file, uid: mount.uid ?? 0, gid: mount.gid ?? 0 },
        { op: 'bind', source: file, target, readonly: true, nodev: true },
      ];
    }
  }
}

interface LaunchOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly status: string;
  readonly stderrTail: string;
}

/** The step's process chain, started before its operations are known. */
interface StartedInit {
  /** Whether it was a spare started before this step (spare-init.ts). */
  readonly spare: boolean;
  /** Hands over the operations (fd 5); the init reads them whole, then sets up and execs. */
  send(ops: readonly InitOp[]): void;
  /** Ends the chain before any operation was sent (the setup failed); resolves once it is gone. */
  cancel(): Promise<void>;
  readonly outcome: Promise<LaunchOutcome>;
}

function startInit(
  spec: SandboxSpec,
  mapping: IdMapping,
  signal: AbortSignal | undefined,
  onOutput: SandboxOptions['onOutput'],
  netnsPath: string | undefined,
  takeSpare = true,
): StartedInit {
  // The common case (no user namespace to map, no ulimits) takes the spare init, or starts one
  // like it; the init then makes its namespaces itself (spare-init.ts). A user namespace's id
  // maps and the ulimits are unshare(1)'s and prlimit(1)'s work: those steps start the chain.
  const viaSpare = unshareMappingArgs(mapping).length === 0 && (spec.ulimits ?? []).length === 0;
  const firstWords = viaSpare ? namespaceWords(spec.network === 'none', netnsPath) : [];
  const spare = viaSpare && takeSpare ? takeSpareInit() : undefined;
  const child = spare ?? spawnInitProcess(viaSpare ? spareInitArgs() : chainArgs(spec, mapping, netnsPath));
  const secretPipe = child.stdio[4] as NodeJS.WritableStream | null;
  const opsPipe = (child.stdio as readonly unknown[])[5] as NodeJS.WritableStream | null;
  // The init may fail before reading them all: a closed pipe is its error to report, not ours.
  (secretPipe as unknown as NodeJS.EventEmitter | null)?.on('error', () => undefined);
  (opsPipe as unknown as NodeJS.EventEmitter | null)?.on('error', () => undefined);
  let cancelled = false;
  // The next RUN's init starts while this one runs its command: once the setup is done and the
  // command is being exec'd (">" on the status fd), not while the setup runs, whose ~35 mounts
  // it slowed on a 2-core machine (the spawn and perl's start took the other core and the main
  // thread); or when this init ends without getting there.
  let sent = false;
  let refilled = false;
  const refillOnce = (): void => {
    if (refilled || !sent || !viaSpare) return;
    refilled = true;
    setImmediate(refillSpareInit);
  };
  const outcome = new Promise<LaunchOutcome>((resolve, reject) => {
    let status = '';
    let stderrTail = '';
    let aborted = false;
    child.stdout?.on('data', (chunk: Buffer) => onOutput?.(chunk, 'stdout'));
    child.stderr?.on('data', (chunk: Buffer) => {
      stderrTail = (stderrTail + chunk.toString('utf8')).slice(-2000);
      onOutput?.(chunk, 'stderr');
    });
    const onAbort = (): void => {
      aborted = true;
      killStep(child.pid);
    };
    // The step is over once PID 1's wait status is in and its output pipes have ended: the
    // init's parent closed its copies, so they end with the step's last process. Its own exit
    // (and Node's reaping of it, ~1-4 ms here) is not waited for.
    let outputOpen = [child.stdout, child.stderr].filter((pipe) => pipe !== null).length;
    let finished = false;
    const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (finished) return;
      finished = true;
      refillOnce();
      signal?.removeEventListener('abort', onAbort);
      if (aborted) reject(abortError(spec));
      else if (cancelled) reject(new Error('cancelled'));
      else resolve({ code, signal: sig, status, stderrTail });
    };
    const finishIfStepEnded = (): void => {
      if (outputOpen === 0 && status.startsWith('+') && /\n=[ES]\d+\n/.test(status)) finish(null, null);
    };
    for (const pipe of [child.stdout, child.stderr]) {
      pipe?.once('end', () => {
        outputOpen--;
        finishIfStepEnded();
      });
    }
    const statusPipe = child.stdio[3];
    statusPipe?.on('data', (chunk: Buffer) => {
      status += chunk.toString('utf8');
      if (status.includes('>')) refillOnce();
      finishIfStepEnded();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    // Aborted while the process was being started: the listener came too late for that.
    if (signal?.aborted === true) onAbort();
    child.on('error', (error) => {
      signal?.removeEventListener('abort', onAbort);
      reject(
        errnoCode(error) === 'ENOENT'
          ? new StratumError(
              'UNSUPPORTED',
              'RUN needs setpriv and unshare (Debian package util-linux) and perl (perl-base) on the PATH',
            )
          : error,
      );
    });
    child.on('close', finish);
  });
  // Awaited only once the operations are sent: until then a failure must not count as unhandled.
  outcome.catch(() => undefined);
  return {
    spare: spare !== undefined,
    send(ops) {
      secretPipe?.end(
        Buffer.concat(spec.mounts.flatMap((mount) => (mount.kind === 'secret' ? [mount.content] : []))),
      );
      opsPipe?.end([...firstWords, ...encodeOps(ops)].join('\0'));
      sent = true;
    },
    async cancel() {
      cancelled = true;
      killStep(child.pid);
      secretPipe?.end();
      opsPipe?.end();
      await outcome.catch(() => undefined);
    },
    outcome,
  };
}

/** setpriv → [nsenter] → unshare → [prlimit] → perl, for a step that needs unshare(1)'s id maps or prlimit. */
function chainArgs(spec: SandboxSpec, mapping: IdMapping, netnsPath: string | undefined): string[] {
  // No --fork: perl forks PID 1 itself and so learns its exact wait status (see init.ts).
  const unshareArgs = ['--mount', '--pid', '--uts', '--ipc', '--propagation', 'private'];
  if (spec.network === 'none') unshareArgs.push('--net');
  unshareArgs.push(...unshareMappingArgs(mapping));
  // setpriv gives unshare a parent-death signal: if stratum itself dies, the step dies too.
  return [
    '--pdeathsig',
    'KILL',
    // The default network: join the private namespace (./network.ts) before making the others.
    ...(netnsPath === undefined ? [] : ['nsenter', `--net=${netnsPath}`]),
    'unshare',
    ...unshareArgs,
    '--',
    ...ulimitArgs(spec.ulimits ?? []),
    'perl',
    '-e',
    initProgram,
    ...syscallNumbers(),
  ];
}

/**
 * Kills PID 1 of the step's namespace (the kernel then kills the rest) and unshare itself. PID 1
 * is unshare's only child; its parent-death signal is the fallback if it was not forked yet.
 */
function killStep(pid: number | undefined): void {
  if (pid === undefined) return;
  void readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .catch(() => '')
    .then((children) => {
      for (const child of children.split(/\s+/).filter((word) => word !== '')) {
        try {
          process.kill(Number(child), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    });
}

/**
 * A spare that died before it read its operations: killed whole (no status), or its PID 1
 * killed while its parent lived on to report it.
 */
function diedWaiting(outcome: LaunchOutcome): boolean {
  return outcome.status === '' ? outcome.signal !== null : /^=S\d+\n$/.test(outcome.status);
}

function interpret(spec: SandboxSpec, outcome: LaunchOutcome, mapping: IdMapping): SandboxResult {
  if (!outcome.status.startsWith('+')) {
    // unshare(1) says why on stderr; a spare init that failed to make them, on its status fd.
    const detail = outcome.status.startsWith('!')
      ? (outcome.status.slice(1).split('\n')[0] ?? '')
      : (outcome.stderrTail.trim().split('\n').pop() ?? '');
    if (mapping.kind === 'root-only' || mapping.kind === 'subordinate') {
      throw new StratumError(
        'UNSUPPORTED',
        `RUN without root needs user namespaces (unshare ${unshareMappingArgs(mapping).join(' ')} failed: ${detail}); enable them (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns) or run stratum as root`,
      );
    }
    throw new StratumError(
      'IO',
      `RUN could not create its namespaces (exit ${outcome.code ?? outcome.signal}): ${detail}`,
    );
  }
  const lines = outcome.status.slice(1).split('\n');
  if (lines.includes('!E2BIG')) throw tooLongForExec(spec);
  const failure = lines.find((line) => line.startsWith('!'));
  if (failure !== undefined) {
    throw new StratumError(
      'BUILD_FAILED',
      `RUN ${JSON.stringify(spec.argv)} could not start: ${failure.slice(1)}`,
    );
  }
  const ended = lines.find((line) => line.startsWith('='));
  if (ended === undefined) {
    throw new StratumError(
      'IO',
      `RUN ${JSON.stringify(spec.argv)}: the sandbox ended without a status (exit ${outcome.code ?? outcome.signal})`,
    );
  }
  const value = Number(ended.slice(2));
  if (ended.startsWith('=S')) {
    const name = signalName(value);
    return name === undefined ? { exitCode: 128 + value } : { exitCode: 128 + value, signal: name };
  }
  return { exitCode: value };
}

function signalName(value: number): NodeJS.Signals | undefined {
  return (Object.keys(constants.signals) as NodeJS.Signals[]).find(
    (name) => constants.signals[name] === value,
  );
}

function abortError(spec: SandboxSpec): StratumError {
  return new StratumError('ABORTED', `RUN ${JSON.stringify(spec.argv)} was aborted`);
}
