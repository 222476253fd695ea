import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOTLESS_USER_ENV, chooseIdMapping, unshareMappingArgs } from './id-mapping.js';
import { inUserNamespace } from '../../util/user-namespace.js';
import { environmentForRestart } from '../../util/extra-ca-certs.js';

/**
 * Where the host's root privileges are missing, stratum runs itself again as root of a user
 * namespace with a mount namespace of its own, as buildah and podman do:
 *
 * - **Rootless**: the caller is 0 and, where /etc/subuid gives one, its subordinate range is
 *   1..n (newuidmap).
 * - **Root without CAP_SYS_ADMIN or CAP_NET_ADMIN** (a container's root, kaniko's case; Docker
 *   gives neither by default, and `--cap-add SYS_ADMIN` alone leaves `lo` of a step's network
 *   namespace down): every id maps to itself, so nothing about owners changes; what the
 *   namespace adds is every capability over the namespaces it owns, so the mount, PID and
 *   network namespaces a RUN step needs can be made and set up, and overlay can be mounted.
 *
 * Inside, every module works as it does as root: COPY writes into a directory a base gave
 * USER 1000, the layer writer reads a 0700 directory of a subordinate id, extraction gives
 * owners, overlay mounts with `userxattr` in our own mount namespace (which goes, with every
 * mount in it, when we exit). What a namespace cannot do (ids it does not map, device nodes,
 * trusted.* xattrs, binfmt handlers) is decided where it matters (src/oci/user-namespace.ts).
 *
 * Returns the exit code of the namespaced run, or undefined to run here: as root that can make
 * namespaces, already in a user namespace, or where none can be made (a locked-down
 * container), where a build without RUN still works and RUN says what it needs.
 */
export async function runInUserNamespace(
  script: string,
  argv: readonly string[],
): Promise<number | undefined> {
  if (process.platform !== 'linux' || inUserNamespace()) return undefined;
  const command = [process.execPath, ...process.execArgv, script, ...argv];
  if (process.getuid?.() === 0) {
    // Capabilities read from /proc: a probe process would cost a fork of this one per build.
    if (hasNamespaceCapabilities()) return undefined;
    // Root without them: the identity map is written from here (root of the parent
    // namespace may map every id), and the namespaced shell waits for it on fd 3 before it
    // starts stratum.
    const unshare = ['--user', '--mount', '--propagation', 'private'];
    if (!canRun('unshare', [...unshare, 'true'])) return undefined;
    const waitForMap = ['sh', '-c', 'read _ <&3; exec 3<&-; exec "$@"', 'sh'];
    const child = start([...unshare, '--', ...waitForMap, ...command], 'root', true);
    if (!(await writeIdentityMap(child))) {
      child.kill('SIGKILL');
      return undefined;
    }
    return waitFor(child);
  }
  const mapping = await chooseIdMapping();
  const unshare = ['--user', ...unshareMappingArgs(mapping), '--mount', '--propagation', 'private'];
  // A probe first: a failing namespace would otherwise look like a failing build.
  if (!canRun('unshare', [...unshare, 'true'])) return undefined;
  const user = 'user' in mapping ? mapping.user : String(process.getuid?.());
  return waitFor(start([...unshare, '--', ...command], user, false));
}

/** CAP_SYS_ADMIN (bit 21) and CAP_NET_ADMIN (bit 12), both in this process's effective set. */
function hasNamespaceCapabilities(): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    const needed = (1n << 21n) | (1n << 12n);
    return hex !== undefined && (BigInt(`0x${hex}`) & needed) === needed;
  } catch {
    return false;
  }
}

function canRun(command: string, args: readonly string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/**
 * On a terminal, the namespaced process stays in this process group: Ctrl-C, Ctrl-backslash,
 * Ctrl-Z and a hangup reach both from the terminal, and it may read and write the terminal as
 * a foreground process; only SIGTERM (sent to this PID) is passed on (see waitFor). Without a
 * terminal it gets a group of its own and every signal is passed on once (a signal to the
 * whole group would reach it twice, and a second one means "stop now" to a build).
 */
const onTerminal = (): boolean => process.stdin.isTTY || process.stdout.isTTY || process.stderr.isTTY;

function start(unshareArgs: readonly string[], user: string, handshake: boolean): ChildProcess {
  // If this process dies, the namespaced one is told (SIGTERM) and cleans up as on Ctrl-C.
  return spawn('setpriv', ['--pdeathsig', 'TERM', 'unshare', ...unshareArgs], {
    stdio: ['inherit', 'inherit', 'inherit', ...(handshake ? (['pipe'] as const) : [])],
    env: environmentForRestart({ ...process.env, [ROOTLESS_USER_ENV]: user }),
    detached: !onTerminal(),
  });
}

/** Maps every id to itself in the child's new user namespace, then lets it go on. */
async function writeIdentityMap(child: ChildProcess): Promise<boolean> {
  const pid = child.pid;
  if (pid === undefined) return false;
  const own = readlinkSync('/proc/self/ns/user');
  // setpriv execs unshare, which makes the namespace and execs the shell: wait for the first.
  for (let waited = 0; ; waited += 2) {
    let current: string;
    try {
      current = readlinkSync(`/proc/${pid}/ns/user`);
    } catch {
      return false; // it exited
    }
    if (current !== own) break;
    if (waited > 5000) return false;
    await sleep(2);
  }
  try {
    for (const map of ['uid_map', 'gid_map']) writeFileSync(`/proc/${pid}/${map}`, '0 0 4294967295\n');
  } catch {
    return false;
  }
  const go = child.stdio[3];
  if (go === null || go === undefined || !('end' in go)) return false;
  go.end('go\n');
  return true;
}

async function waitFor(child: ChildProcess): Promise<number> {
  const terminal = onTerminal();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  const handlers = new Map<NodeJS.Signals, () => void>(
    signals.map((signal) => [
      signal,
      terminal && signal !== 'SIGTERM'
        ? () => undefined
        : () => {
            child.kill(signal);
          },
    ]),
  );
  for (const [signal, handler] of handlers) process.on(signal, handler);
  try {
    return await new Promise<number>((resolve, reject) => {
      // It may have ended while the identity map was being written.
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve(child.exitCode ?? 128 + constants.signals[child.signalCode!]);
        return;
      }
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
      });
    });
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
}
