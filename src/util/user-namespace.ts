import { readFileSync, readlinkSync } from 'node:fs';

/**
 * Whether this process runs in a user namespace other than the host's, and which ids it maps.
 * A rootless stratum re-executes itself inside one (see src/user-namespace.ts), where it is
 * root: it may chown to every mapped id and read every file they own, but not give an id the
 * namespace does not map (EINVAL), make a device node, set `trusted.*` xattrs (overlayfs then
 * needs `userxattr` and `user.overlay.*`) or register binfmt handlers. The same holds for root
 * in a container that runs in a user namespace; /proc/self/ns/user tells, uid_map says which ids.
 */
export interface IdRange {
  /** First id inside the namespace. */
  readonly inside: number;
  readonly count: number;
}

export interface UserNamespaceIds {
  readonly uids: readonly IdRange[];
  readonly gids: readonly IdRange[];
  /** setgroups(2) is allowed (a namespace set up by --map-root-user denies it). */
  readonly setgroups: boolean;
}

let cached: UserNamespaceIds | null | undefined;

/** The ids of this process's user namespace; undefined in the host's namespace. */
export function userNamespaceIds(): UserNamespaceIds | undefined {
  if (cached === undefined) cached = readIds();
  return cached ?? undefined;
}

export function inUserNamespace(): boolean {
  return userNamespaceIds() !== undefined;
}

/**
 * A namespace that maps every id to itself: root of the host without CAP_SYS_ADMIN runs there
 * (src/user-namespace.ts); it is not rootless.
 */
export function mapsEveryId(): boolean {
  const ids = userNamespaceIds();
  const whole = (ranges: readonly IdRange[]): boolean =>
    ranges.length === 1 && ranges[0]!.inside === 0 && ranges[0]!.count === 4294967295;
  return ids !== undefined && whole(ids.uids) && whole(ids.gids);
}

/** Whether `id` is one of `ranges`' inside ids. */
export function idMapped(ranges: readonly IdRange[], id: number): boolean {
  return ranges.some((range) => id >= range.inside && id < range.inside + range.count);
}

/** The host's user namespace has this inode number on every kernel (PROC_USER_INIT_INO). */
const INIT_USER_NAMESPACE = 'user:[4026531837]';

function readIds(): UserNamespaceIds | null {
  let namespace: string;
  let uidMap: string;
  try {
    namespace = readlinkSync('/proc/self/ns/user');
    uidMap = readFileSync('/proc/self/uid_map', 'utf8');
  } catch {
    return null; // no /proc: not Linux, or no way to tell; behave as the host
  }
  // Not the uid map: a namespace may map every id to itself (root without CAP_SYS_ADMIN does).
  if (namespace === INIT_USER_NAMESPACE) return null;
  let gidMap = '';
  let setgroups = 'allow';
  try {
    gidMap = readFileSync('/proc/self/gid_map', 'utf8');
    setgroups = readFileSync('/proc/self/setgroups', 'utf8').trim();
  } catch {
    // older kernels lack /proc/self/setgroups: setgroups is allowed there
  }
  return { uids: parseMap(uidMap), gids: parseMap(gidMap), setgroups: setgroups !== 'deny' };
}

/** `inside outside count` lines: the inside ranges (where they map to outside does not matter here). */
function parseMap(text: string): IdRange[] {
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((fields) => fields.length === 3 && fields.every(Number.isSafeInteger))
    .map(([inside, , count]) => ({ inside: inside!, count: count! }));
}
