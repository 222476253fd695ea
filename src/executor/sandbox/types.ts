/**
 * The contract between the build engine and RUN isolation: plain data in, plain data out.
 * Everything in a SandboxSpec is final: the engine has already applied SHELL, the default PATH,
 * HOME, ARGs and ENV, and resolved USER to numbers (see ../users.ts).
 */

/** How a RUN step is isolated (./isolation.ts says which modes exist and how one is chosen). */
export type IsolationMode = 'namespaces' | 'proot';

/** A host path (file or directory) made visible at `target` inside the step. */
export interface BindMount {
  readonly kind: 'bind';
  /** Host path; its type (file or directory) decides the mount point's type. */
  readonly source: string;
  /** Absolute path inside the rootfs. */
  readonly target: string;
  readonly readonly: boolean;
}

/** An empty tmpfs; its content is thrown away with the step and never reaches the rootfs. */
export interface TmpfsMount {
  readonly kind: 'tmpfs';
  readonly target: string;
  /** Bytes; the kernel's default (half of RAM) when omitted. */
  readonly size?: number;
}

/**
 * A secret. Its bytes reach the step's init through a pipe and are written to a tmpfs mounted in
 * the step's own mount namespace, with the requested mode and owner (BuildKit's defaults: 0400,
 * uid 0, gid 0), and bound read-only: the secret is never on a disk, not even for a build that is
 * killed, and never in the rootfs; the tmpfs goes with the namespace.
 */
export interface SecretMount {
  readonly kind: 'secret';
  readonly content: Uint8Array;
  /** Absolute path inside the rootfs, usually /run/secrets/<id>. */
  readonly target: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

/** Cache mounts are `bind` mounts of a persistent directory that the engine manages. */
export type SandboxMount = BindMount | TmpfsMount | SecretMount;

/**
 * `host`: the host's network namespace; `none`: a private one with only `lo`; `default`: a
 * private one with outbound access through pasta (see network.ts), as Docker's default.
 */
export type SandboxNetwork = 'host' | 'none' | 'default';

export interface SandboxSpec {
  /** Host directory that becomes `/` for the step. */
  readonly rootfs: string;
  /** Final argv: argv[0] is looked up in the step's own PATH (as runc does) when it has no slash. */
  readonly argv: readonly string[];
  /** Final environment, `KEY=VALUE` entries. */
  readonly env: readonly string[];
  /** Absolute working directory inside the rootfs; it must already exist (WORKDIR creates it). */
  readonly cwd: string;
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
  readonly hostname: string;
  readonly network: SandboxNetwork;
  readonly mounts: readonly SandboxMount[];
  /** /dev/shm's size in bytes (default 64 MiB, as Docker). */
  readonly shmSize?: number;
  /**
   * `RUN --security=insecure` (granted with `--allow security.insecure`): every capability, no
   * seccomp filter, no masked or read-only /proc paths, as BuildKit's insecure mode. Device nodes
   * still cannot be opened (nodev), as stratum makes no device cgroup to grant them.
   */
  readonly insecure?: boolean;
  /** setrlimit values for the step (`--ulimit`), applied with prlimit(1) before the init. */
  readonly ulimits?: readonly Ulimit[];
  /** Content of the step's /etc/hosts, /etc/resolv.conf and /etc/hostname. */
  readonly etcHosts: string;
  readonly etcResolvConf: string;
  readonly etcHostname: string;
}

export interface SandboxResult {
  /** The command's exit code; 128 + n when it was killed by signal n (the shell convention). */
  readonly exitCode: number;
  readonly signal?: NodeJS.Signals;
}

export interface SandboxOptions {
  readonly signal?: AbortSignal;
  /**
   * Where the step's own files (hosts, resolv.conf, hostname) are made: the build's workspace,
   * so that a killed build's leftovers are removed with it. Default: `$STRATUM_TMPDIR`, else
   * the system temporary directory.
   */
  readonly scratchParent?: string;
  /**
   * A fresh directory of this step's own, which the caller removes (a build: with its
   * workspace, after the outputs): the namespaces mode writes the step's files there instead of
   * making a directory of its own in `scratchParent` and removing it on the step's path (~2 ms
   * of mkdir and rmdir on this VM's ext4). Names it uses: hosts, resolv.conf, hostname, secrets.
   */
  readonly scratchDir?: string;
  readonly onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  /**
   * Under proot a step as another user reaches the rootfs on its real path: directories at or
   * below this one (the build's workspace) may be opened for search (o+x) on the way.
   */
  readonly searchableRoot?: string;
  /** How to isolate the step (./isolation.ts); default: the namespaces. */
  readonly isolation?: IsolationMode;
}

/** Docker's default PATH, used when the image sets none (moby's oci.DefaultPathEnv on Linux). */
export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** One resource limit (Docker's `--ulimit NAME=SOFT[:HARD]`); names as prlimit(1) spells them. */
export interface Ulimit {
  readonly name: string;
  readonly soft: number | 'unlimited';
  readonly hard: number | 'unlimited';
}
