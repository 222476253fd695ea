import { execFile } from 'node:child_process';
import { inUserNamespace } from '../../util/user-namespace.js';
import { randomBytes } from 'node:crypto';
import { lstat, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { makeDirectories } from '../../util/directories.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import { ROOTLESS_USER_ENV } from './id-mapping.js';

/**
 * Docker's default network for RUN, without a daemon: each step gets its own network namespace
 * whose only way out is user-mode networking by `pasta` (Debian package passt), as podman and
 * buildah do. pasta copies the host's addresses and routes into the namespace and forwards
 * outbound TCP, UDP and ICMP through ordinary host sockets, so nothing is configured on the
 * host; connections to the gateway address reach the host's loopback (pasta's default
 * gateway mapping), which is how a step reaches a service on the host's 127.0.0.1.
 *
 * Setting a namespace up costs pasta about half a second, so namespaces are pooled for the
 * life of the process (BuildKit pools its network namespaces the same way): a step takes one,
 * and gives it back when it ends. A step's processes die with its PID namespace, so nothing a
 * step started is left in a namespace the next step gets. They end when the last build holding
 * the pool (`holdPrivateNetworks`) lets go.
 *
 * A namespace is a file (a bind mount of the nsfs inode, as `ip netns add` makes) under
 * /run/stratum-netns; the step enters it with nsenter before unshare makes the other
 * namespaces. Rootless, stratum is root of its user namespace (src/user-namespace.ts), which
 * owns the network namespaces it makes, as rootless podman's are: the files then live in the
 * caller's runtime directory ($XDG_RUNTIME_DIR, else the temporary directory), and the mounts
 * in stratum's own mount namespace, gone with it. Without root outside any namespace (a library
 * caller) it is refused: a step's user namespace may not join a namespace it does not own.
 */

const ROOT_NETNS_DIR = '/run/stratum-netns';

/** Where this process keeps its namespace files (see above). */
function netnsDirectory(): string {
  if (!inUserNamespace()) return ROOT_NETNS_DIR;
  const user = (process.env[ROOTLESS_USER_ENV] ?? 'userns').replace(/[^A-Za-z0-9_.-]/g, '_');
  return join(process.env['XDG_RUNTIME_DIR'] ?? tmpdir(), `stratum-netns-${user}`);
}

let netnsDir: Promise<string> | undefined;

/** The directory, made private; refused when someone else made it first (a shared /tmp). */
function ensureNetnsDirectory(): Promise<string> {
  netnsDir ??= (async () => {
    const dir = netnsDirectory();
    // Bounded (util/directories.ts): XDG_RUNTIME_DIR or TMPDIR under /proc made Node's recursive mkdir spin.
    await makeDirectories(dir, 0o700);
    const info = await lstat(dir);
    if (!info.isDirectory() || info.uid !== process.getuid?.() || (info.mode & 0o077) !== 0) {
      throw new StratumError(
        'IO',
        `RUN's network namespace: ${dir} is not a private directory of this user (mode 0700); remove it`,
      );
    }
    return dir;
  })();
  return netnsDir;
}

/** pasta: no inbound port forwarding (`none` for TCP/UDP both ways), quiet, stays root for nsfs access. */
const PASTA_ARGS = [
  '--config-net',
  '--quiet',
  '--runas',
  '0',
  '-t',
  'none',
  '-u',
  'none',
  '-T',
  'none',
  '-U',
  'none',
];

/** What a step's /etc/resolv.conf can name: pasta forwards DNS sent here to the host's resolver. */
export const DNS_FORWARD_ADDRESS = '169.254.1.1';

interface Namespace {
  readonly path: string;
  readonly pastaPid: number;
}

const idle: Namespace[] = [];
const all = new Set<Namespace>();

function run(command: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) resolve({ stdout, stderr });
      else reject(Object.assign(new Error(error.message, { cause: error }), { stderr, code: error.code }));
    });
  });
}

let checked: Promise<void> | undefined;
let staleRemoved: Promise<void> | undefined;

/** Fails once, clearly, when the default network cannot be given; cached for the process. */
function checkSupport(): Promise<void> {
  checked ??= (async () => {
    if (process.getuid?.() !== 0) {
      throw new StratumError(
        'UNSUPPORTED',
        "RUN with the default network needs root, or stratum running in a user namespace of its own (the CLI does that; a step's namespace may not join a network namespace it does not own); pass --network host to use the host network, or --network none",
      );
    }
    try {
      await run('pasta', ['--version']);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') {
        throw new StratumError(
          'UNSUPPORTED',
          'RUN with the default network needs pasta (Debian package passt) for its private network namespace, and it is not installed; install passt, or pass --network host to use the host network (or --network none)',
        );
      }
      // `pasta --version` exits non-zero on some versions; being found is what matters here.
    }
  })();
  return checked;
}

/**
 * How many times a namespace is made before pasta's failure is the step's. Once, under load,
 * pasta failed its setup of a fresh namespace ("Failed to open tun socket in namespace": its
 * open of /dev/net/tun, TUNSETIFF or the new interface's lookup, in the namespace) and a rerun
 * passed; nothing on stratum's side races with it (unshare has bound the namespace when it
 * returns, and no one else knows the path yet), and 360 setups, up to 3 at a time under load, as
 * root and in a user namespace, did not fail again. A failed setup leaves nothing (the namespace
 * is unmounted and removed), so a fresh one is made and pasta tried again.
 */
const SETUP_TRIES = 3;

async function create(): Promise<Namespace> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createOnce();
    } catch (error) {
      if (attempt >= SETUP_TRIES || !(error instanceof PastaSetupError)) throw error;
    }
  }
}

/** pasta ran and could not set the namespace up (not: pasta missing, or the namespace not made). */
class PastaSetupError extends StratumError {}

async function createOnce(): Promise<Namespace> {
  const dir = await ensureNetnsDirectory();
  staleRemoved ??= removeStale(dir);
  await staleRemoved;
  const name = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const path = join(dir, name);
  const pidFile = join(dir, `${name}.pasta.pid`);
  await writeFile(path, '', { flag: 'wx' });
  try {
    // unshare binds the new namespace on `path`, so it outlives the `true` that made it.
    await run('unshare', [`--net=${path}`, 'true']);
    try {
      // pasta sets the namespace up, then goes to the background: when it returns, the
      // namespace has its interface, addresses and routes.
      await run('pasta', [
        ...PASTA_ARGS,
        '--dns-forward',
        DNS_FORWARD_ADDRESS,
        '-P',
        pidFile,
        '--netns',
        path,
      ]);
      const pastaPid = Number((await readFile(pidFile, 'utf8')).trim());
      return { path, pastaPid };
    } catch (error) {
      await run('umount', [path]).catch(() => undefined);
      const detail = (error as { stderr?: string }).stderr?.trim().split('\n').pop() ?? String(error);
      throw new PastaSetupError('IO', `RUN's network namespace: pasta could not set it up: ${detail}`);
    }
  } catch (error) {
    await rm(path, { force: true });
    await rm(pidFile, { force: true });
    throw error instanceof StratumError
      ? error
      : new StratumError('IO', `RUN's network namespace could not be made: ${String(error)}`);
  }
}

/**
 * Namespaces a killed stratum left behind (its pid is gone): their pasta is ended and the
 * mount removed, so a crash costs nothing lasting. The pid file is kept for this.
 */
async function removeStale(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => []);
  for (const name of names) {
    const match = /^(\d+)-[0-9a-f]+$/.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    const path = join(dir, name);
    const pastaPid = Number((await readFile(`${path}.pasta.pid`, 'utf8').catch(() => '')).trim());
    await destroy({ path, pastaPid });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === 'EPERM';
  }
}

/** A private network namespace for one step: the path to enter, and how to give it back. */
export async function acquirePrivateNetwork(): Promise<{
  readonly path: string;
  readonly release: () => void;
}> {
  await checkSupport();
  const namespace = idle.pop() ?? (await create());
  all.add(namespace);
  let released = false;
  return {
    path: namespace.path,
    release: () => {
      if (released) return;
      released = true;
      if (all.has(namespace)) idle.push(namespace);
    },
  };
}

let users = 0;

/**
 * A build holds the pool while it runs; when the last build in the process lets go, every
 * namespace and its pasta end. Returns the function that lets go (safe to call twice).
 */
export function holdPrivateNetworks(): () => Promise<void> {
  users++;
  let held = true;
  return async () => {
    if (!held) return;
    held = false;
    users--;
    if (users === 0) await closePrivateNetworks();
  };
}

/** Ends every pooled namespace and its pasta. */
export async function closePrivateNetworks(): Promise<void> {
  const namespaces = [...all];
  all.clear();
  idle.length = 0;
  await Promise.all(namespaces.map(destroy));
}

async function destroy(namespace: Namespace): Promise<void> {
  // Only a pasta serving this namespace: a stale pid file's number may have been reused.
  const command = await readFile(`/proc/${namespace.pastaPid}/cmdline`, 'utf8').catch(() => '');
  if (namespace.pastaPid > 0 && command.includes(namespace.path)) {
    try {
      process.kill(namespace.pastaPid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  // The mount can go once pasta no longer holds the namespace open; give it a moment.
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await run('umount', [namespace.path]);
      break;
    } catch (error) {
      // A stale file of a rootless stratum: its mount went with that process's mount namespace.
      if ((error as { stderr?: string }).stderr?.includes('not mounted') === true) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  await rm(namespace.path, { force: true }).catch(() => undefined);
  await rm(`${namespace.path}.pasta.pid`, { force: true }).catch(() => undefined);
}

/**
 * The step's /etc/resolv.conf on the private network: the host's, with every resolver replaced by
 * pasta's DNS forward address, which pasta relays to the host's resolver. Loopback resolvers
 * (systemd-resolved's 127.0.0.53) are not there for the step; a non-loopback one cannot be asked
 * directly either: pasta gives the namespace the host's own addresses, and the pasta in Debian
 * bookworm answers forwarded queries from the forward address, which a resolver's connected UDP
 * socket (glibc's) drops. Search domains and options stay.
 */
export function privateResolvConf(hostResolvConf: string): string {
  const isNameserver = (line: string): boolean => /^\s*nameserver\s/.test(line);
  const lines = hostResolvConf.split('\n');
  const first = lines.findIndex(isNameserver);
  const kept = lines.filter((line) => !isNameserver(line));
  kept.splice(first === -1 ? 0 : first, 0, `nameserver ${DNS_FORWARD_ADDRESS}`);
  return kept.join('\n');
}
