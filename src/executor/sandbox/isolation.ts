import { spawnSync } from 'node:child_process';
import { StratumError } from '../../errors.js';
import { chooseIdMapping, unshareMappingArgs } from './id-mapping.js';
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

/** Probes once per process (one `unshare`, ~5 ms), then answers from memory. */
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

async function probe(): Promise<IsolationChoice> {
  const mapping = await chooseIdMapping();
  const unshare = spawnSync(
    'unshare',
    ['--mount', '--pid', '--fork', '--uts', '--ipc', ...unshareMappingArgs(mapping), 'true'],
    { encoding: 'utf8' },
  );
  if (unshare.status === 0) return { mode: 'namespaces', reason: 'available' };
  const why =
    unshare.error !== undefined
      ? 'unshare is not installed'
      : (unshare.stderr.trim().split('\n').pop() ?? '');
  if (prootPath() === undefined) {
    // No fallback: the namespace mode stays, and the first RUN says what failed and what to install.
    return { mode: 'namespaces', reason: `no namespaces here (${why}) and no proot` };
  }
  return { mode: 'proot', reason: `no namespaces here (${why}): the container is the sandbox` };
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
