import { execFile, spawnSync } from 'node:child_process';
import { StratumError } from '../../errors.js';
import { runOverlayHelper } from '../../snapshot/overlay-helper.js';
import { chooseIdMapping, onPath, unshareMappingArgs, type IdMapping } from './id-mapping.js';
import { RUN_NAMESPACES } from './spare-init.js';
import type { IsolationMode, SandboxOptions, SandboxResult, SandboxSpec } from './types.js';

export type { IsolationMode };

/**
 * How a RUN step is isolated. The strongest the environment allows is taken, and the build's log
 * says which, as it says which snapshotter:
 *
 * - `namespaces`: the step's own mount, PID, UTS, IPC (and network) namespaces under Docker's
 *   default spec (./run.ts). On a host, rootless, and in containers that allow user namespaces.
 * - `proot`: where no namespace can be made at all (a container under Docker's default settings,
 *   a Kubernetes pod under the `baseline` policy): the step runs under Debian's `proot`, a
 *   ptrace-based chroot, with the container's own /proc, /dev and /sys; the container's seccomp
 *   profile, capabilities and masked paths are the floor (./proot.ts).
 *
 * A mode asked for (`--isolation`) that cannot be had is an error, never a silent downgrade.
 */
export type IsolationRequest = IsolationMode | 'auto';

/** One isolation mode's implementation (run.ts namespaces, proot.ts proot). */
export interface Isolation {
  readonly mode: IsolationMode;
  run(spec: SandboxSpec, options: SandboxOptions): Promise<SandboxResult>;
}

export interface IsolationChoice {
  readonly mode: IsolationMode;
  readonly reason: string;
}

let probed: Promise<IsolationChoice> | undefined;

/**
 * Probes once per process (a fork of the helper process as root, else one `unshare`), then answers from
 * memory. A build starts the probe when its first step runs (see warmIsolation), so that it
 * overlaps that step and the first RUN does not wait for it.
 */
export function chooseIsolation(requested: IsolationRequest = 'auto'): Promise<IsolationChoice> {
  probed ??= probe();
  return probed.then((available) => {
    if (requested === 'auto' || requested === available.mode) return available;
    if (requested === 'proot') {
      if (prootPath() === undefined) throw prootMissing('--isolation proot');
      return { mode: 'proot', reason: 'asked for (--isolation proot)' };
    }
    throw new StratumError(
      'UNSUPPORTED',
      `--isolation namespaces: RUN's namespaces cannot be made here (${available.reason}); a container needs --security-opt seccomp=unconfined (or a pod seccompProfile Unconfined), or use --isolation proot`,
    );
  });
}

/** Starts the probe (when no step needed it yet) without waiting for it; errors wait too. */
export function warmIsolation(): void {
  if (probed !== undefined) return;
  probed = probe();
  // Its outcome, a failure included, is for the step that asks; none may be left unhandled.
  probed.catch(() => undefined);
}

async function probe(): Promise<IsolationChoice> {
  const mapping = await chooseIdMapping();
  const unshare = await (unshareMappingArgs(mapping).length === 0
    ? probeInHelper()
    : probeWithUnshare(mapping));
  if (unshare === undefined) return { mode: 'namespaces', reason: 'available' };
  const why = unshare.missing
    ? 'unshare or setpriv (util-linux) is not installed'
    : (unshare.stderr.trim().split('\n').pop() ?? '');
  if (prootPath() === undefined) {
    // No fallback: the namespace mode stays, and the first RUN says what failed and what to install.
    return { mode: 'namespaces', reason: `no namespaces here (${why}) and no proot` };
  }
  return { mode: 'proot', reason: `no namespaces here (${why}): the container is the sandbox` };
}

/** Why namespaces cannot be made (a tool missing, or the kernel's refusal); undefined when they can. */
type ProbeFailure = { readonly missing: boolean; readonly stderr: string } | undefined;

/**
 * Root (of the host or of stratum's own user namespace) needs no id maps: the long-lived helper
 * process forks the probe (snapshot/overlay-helper.ts `nsprobe`), which costs no spawn — a spawn
 * blocks the event loop 10-30 ms in a one-shot build. The tools RUN needs are checked as
 * `unshare` being there was.
 */
async function probeInHelper(): Promise<ProbeFailure> {
  const [unshare, setpriv] = await Promise.all([onPath('unshare'), onPath('setpriv')]);
  if (!unshare || !setpriv) return { missing: true, stderr: '' };
  let answer: string | undefined;
  try {
    [answer] = await runOverlayHelper([{ op: 'nsprobe', flags: RUN_NAMESPACES }]);
  } catch {
    return probeWithUnshare({ kind: 'host' }); // no helper (perl missing): ask unshare(1)
  }
  return answer === 'ok' ? undefined : { missing: false, stderr: answer ?? 'no answer' };
}

function probeWithUnshare(mapping: IdMapping): Promise<ProbeFailure> {
  return new Promise<ProbeFailure>((resolve) => {
    execFile(
      'unshare',
      ['--mount', '--pid', '--fork', '--uts', '--ipc', ...unshareMappingArgs(mapping), 'true'],
      { encoding: 'utf8' },
      (error, _stdout, stderr) => {
        if (error === null) resolve(undefined);
        else resolve({ missing: error.code === 'ENOENT', stderr });
      },
    );
  });
}

let proot: string | null | undefined;

/** The absolute path of `proot` on the PATH, or undefined. */
export function prootPath(): string | undefined {
  if (proot === undefined) {
    const found = spawnSync('sh', ['-c', 'command -v proot'], { encoding: 'utf8' });
    proot = found.status === 0 && found.stdout.trim().startsWith('/') ? found.stdout.trim() : null;
  }
  return proot ?? undefined;
}

export function prootMissing(what: string): StratumError {
  return new StratumError(
    'UNSUPPORTED',
    `${what} needs proot (Debian package proot) on the PATH, and it is not installed`,
  );
}
