import { spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { ROOTLESS_USER_ENV, chooseIdMapping, unshareMappingArgs } from './executor/sandbox/id-mapping.js';

/**
 * A rootless stratum runs itself again as root of a user namespace (and a mount namespace of its
 * own), as buildah and podman do: with the caller as 0 and, where /etc/subuid gives one, its
 * subordinate range as 1..n. Inside, every module works as it does as root: COPY writes into a
 * directory a base gave USER 1000, the layer writer reads a 0700 directory of a subordinate id,
 * extraction gives owners, removal needs no help, overlay mounts with `userxattr` in our own
 * mount namespace (which goes, with every mount in it, when we exit). What a namespace cannot do
 * (ids it does not map, device nodes, trusted.* xattrs, binfmt handlers) is decided where it
 * matters, by reading /proc/self/uid_map (src/oci/user-namespace.ts).
 *
 * Returns the exit code of the namespaced run, or undefined to run here: as root, or where no
 * user namespace can be made (a locked-down container), where a build without RUN still works
 * and RUN says what it needs.
 */
export async function runInUserNamespace(
  script: string,
  argv: readonly string[],
): Promise<number | undefined> {
  if (process.getuid?.() === 0 || process.platform !== 'linux') return undefined;
  const mapping = await chooseIdMapping();
  const unshare = ['--user', ...unshareMappingArgs(mapping), '--mount', '--propagation', 'private'];
  // A probe first: a failing namespace would otherwise look like a failing build.
  if (spawnSync('unshare', [...unshare, 'true'], { stdio: 'ignore' }).status !== 0) return undefined;
  // On a terminal, the namespaced process stays in this process group: Ctrl-C, Ctrl-backslash, Ctrl-Z
  // and a hangup reach both from the terminal, and it may read and write the terminal as a
  // foreground process; only SIGTERM (sent to this PID) is passed on. Without a terminal it
  // gets a group of its own and every signal is passed on once (a signal to the whole group
  // would reach it twice, and a second one means "stop now" to a build).
  const terminal = process.stdin.isTTY || process.stdout.isTTY || process.stderr.isTTY;
  const child = spawn(
    'setpriv',
    // If this process dies, the namespaced one is told (SIGTERM) and cleans up as on Ctrl-C.
    [
      '--pdeathsig',
      'TERM',
      'unshare',
      ...unshare,
      '--',
      process.execPath,
      ...process.execArgv,
      script,
      ...argv,
    ],
    {
      stdio: 'inherit',
      env: {
        ...process.env,
        [ROOTLESS_USER_ENV]: 'user' in mapping ? mapping.user : String(process.getuid?.()),
      },
      detached: !terminal,
    },
  );
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  const ignore = (): void => undefined;
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  const handlers = new Map<NodeJS.Signals, () => void>(
    signals.map((signal) => [signal, terminal && signal !== 'SIGTERM' ? ignore : () => forward(signal)]),
  );
  for (const [signal, handler] of handlers) process.on(signal, handler);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
      });
    });
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
}
