import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { trace } from '../../util/trace.js';
import { initProgram, syscallNumbers } from './init.js';

/**
 * A RUN's process chain (`setpriv` → `unshare` → `perl`) costs three execs, about 25 ms, and
 * `spawn` blocks the event loop for 6-9 ms of it. A spare init is that chain without `unshare`,
 * started while the build does something else (the step before, the command of the RUN before):
 * a perl that has loaded its program and waits for its operations on fd 5. The step that takes
 * it sends, ahead of its operations, the namespaces to make (see `namespaceWords`), and the init
 * makes them itself with unshare(2) and setns(2), exactly as unshare(1) would have — at that
 * moment, so the mount namespace it copies holds the step's rootfs, mounted meanwhile.
 *
 * One spare at a time, and only while a holder wants one (holdSpareInits, holdSpareInitsForBuild):
 * nothing waits in the background of a process that is not building. A spare that dies unused
 * (its parent-death signal, EOF on fd 5) exits without doing anything.
 */

/**
 * The chain of a spare: its PID namespace and that namespace's PID 1 made at once, while it
 * waits (a fork, ~2 ms here); the other namespaces when the step's first words come.
 */
export function spareInitArgs(): string[] {
  // setpriv gives perl a parent-death signal: if stratum itself dies, the step dies too.
  return ['--pdeathsig', 'KILL', 'perl', '-e', initProgram, ...syscallNumbers(), 'early-pid-namespace'];
}

/** How every init's process is started: fd 3 status, fd 4 secrets, fd 5 operations (init.ts). */
export function spawnInitProcess(args: readonly string[]): ChildProcess {
  return spawn('setpriv', args, {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
    // The host tools need a PATH; the step's own environment is set by the init, not here.
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
}

// clone(2) flags, as unshare(1) passes them.
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;

/** The namespaces of every RUN step (`network none` adds its own network namespace). */
export const RUN_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID;

/**
 * The first words a spare init reads: `unshare --mount --pid --uts --ipc --propagation private`
 * (plus `--net` for `network none`), after joining `netnsPath` (the default network's private
 * namespace, as `nsenter --net=` did).
 */
export function namespaceWords(ownNetwork: boolean, netnsPath: string | undefined): string[] {
  const flags = RUN_NAMESPACES | (ownNetwork ? CLONE_NEWNET : 0);
  return ['namespaces', String(flags), netnsPath ?? ''];
}

let spare: ChildProcess | undefined;

/**
 * What a holder asks for. A build: a spare while a RUN of it may still come (`runsAhead`, the
 * RUN instructions it has not started); one more after its last RUN would only take a core from
 * that RUN's command (~10 ms of `make` on 2 cores) and be thrown away. Any other holder (a
 * `--watch` session): a spare while no build holds them, so the next build's first RUN finds one
 * that was started while nothing else ran.
 */
interface Hold {
  runsAhead?: number;
}
const holds = new Set<Hold>();

function wantsSpare(): boolean {
  let building = false;
  for (const hold of holds) {
    if (hold.runsAhead === undefined) continue;
    if (hold.runsAhead > 0) return true;
    building = true;
  }
  return !building && holds.size > 0;
}

function letGo(hold: Hold): void {
  if (!holds.delete(hold)) return;
  if (holds.size === 0) discardSpare();
  else if (wantsSpare()) setImmediate(refillSpareInit);
}

/**
 * A hold on the spares between builds (a `--watch` session for its whole life); when the last
 * holder lets go, the spare waiting is ended. Returns the function that lets go (safe to call
 * twice).
 */
export function holdSpareInits(): () => void {
  const hold: Hold = {};
  holds.add(hold);
  return () => {
    letGo(hold);
  };
}

/** A build's hold on the spares: `runStarting` as each of its `runs` RUN steps starts (cached or not). */
export interface BuildSpareHold {
  readonly runStarting: () => void;
  readonly release: () => void;
}

export function holdSpareInitsForBuild(runs: number): BuildSpareHold {
  const hold: Hold = { runsAhead: runs };
  holds.add(hold);
  return {
    runStarting: () => {
      // More RUNs than counted (a base image's ONBUILD): the extra ones start their own init.
      hold.runsAhead = Math.max(0, (hold.runsAhead ?? 0) - 1);
    },
    release: () => {
      letGo(hold);
    },
  };
}

/** Starts a spare if a holder wants one and none is waiting. Cheap to call often. */
export function refillSpareInit(): void {
  if (spare !== undefined || !wantsSpare()) return;
  let child: ChildProcess;
  try {
    trace('spare: spawning');
    child = spawnInitProcess(spareInitArgs());
    trace('spare: spawned');
  } catch {
    return; // the step that needs one spawns its own and reports what fails
  }
  // A missing setpriv or perl: the step's own spawn meets the same error and reports it.
  child.on('error', () => undefined);
  child.once('exit', () => {
    if (spare === child) spare = undefined;
  });
  // Waiting must not keep the process alive.
  child.unref();
  for (const pipe of pipesOf(child)) {
    pipe.on('error', () => undefined);
    pipe.unref();
  }
  spare = child;
}

/** The waiting spare, now the caller's (it must send it operations or kill it), if one is alive. */
export function takeSpareInit(): ChildProcess | undefined {
  const child = spare;
  spare = undefined;
  if (child === undefined) return undefined;
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return undefined;
  child.ref();
  for (const pipe of pipesOf(child)) pipe.ref();
  return child;
}

/** The child's pipes to this process (sockets, so they can be unreferenced while it waits). */
function pipesOf(child: ChildProcess): Socket[] {
  return (child.stdio as readonly unknown[]).filter(
    (pipe): pipe is Socket => pipe !== null && pipe !== undefined,
  );
}

function discardSpare(): void {
  const child = spare;
  spare = undefined;
  if (child === undefined) return;
  // EOF on fd 5 ends it quietly; the kill covers a spare that has not read yet.
  ((child.stdio as readonly unknown[])[5] as NodeJS.WritableStream | null)?.end();
  child.kill('SIGKILL');
}
