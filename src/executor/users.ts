import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { StratumError } from '../errors.js';
import { existingPathInRoot } from './sandbox/root-path.js';

/**
 * USER and COPY --chown resolved the way Docker resolves them: through the IMAGE's own
 * /etc/passwd and /etc/group (read chroot-style: a symlinked /etc/passwd in the image can never
 * make us read the host's), never the host's.
 *
 * USER follows runc's GetExecUser, as BuildKit calls it:
 * - `user` / `uid`, optionally `:group` / `:gid`; the empty spec means uid 0.
 * - A numeric user is always a uid (never a name); one missing from passwd is allowed and gets
 *   gid 0 and HOME `/` (runc's defaults). A name missing from passwd is an error.
 * - Without an explicit group, gid is the passwd entry's and the supplementary groups are those
 *   of /etc/group that list the user's name, the primary gid first unless among them; with an
 *   explicit group they are the primary gid alone.
 * - HOME is the passwd entry's home field ("/" when the user has no entry).
 */
export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
  readonly home: string;
}

export interface ResolvedOwner {
  readonly uid: number;
  readonly gid: number;
}

interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

const maxId = 2 ** 31 - 1; // runc's maxID

export async function resolveUser(rootfs: string, userSpec: string): Promise<ResolvedUser> {
  const [userArg = '', groupArg = ''] = userSpec.split(':');
  const numericUid = parseId(userArg);
  const passwd = await readPasswd(rootfs);
  const match = passwd.find((entry) =>
    userArg === ''
      ? entry.uid === 0
      : numericUid !== undefined
        ? entry.uid === numericUid
        : entry.name === userArg,
  );

  let uid = 0;
  let gid = 0;
  let home = '/';
  if (match !== undefined) {
    ({ uid, gid, home } = match);
  } else if (userArg !== '') {
    if (numericUid === undefined) {
      throw new StratumError(
        'NOT_FOUND',
        `USER ${userSpec}: unable to find user ${userArg}: no matching entries in the image's /etc/passwd`,
      );
    }
    uid = checkRange(numericUid, userSpec);
  }

  let members: number[] = [];
  if (groupArg !== '') {
    gid = await lookupGroup(rootfs, groupArg, `USER ${userSpec}`);
  } else if (match !== undefined) {
    const groups = await readGroup(rootfs);
    members = groups.filter((group) => group.members.includes(match.name)).map((group) => group.gid);
  }
  // BuildKit (executor/oci/user.go, since moby/buildkit#3651, v0.12) passes runc's Sgids (the
  // groups naming the user, for USER without a group) and puts the primary gid first unless it is
  // among them (containerd's ensureAdditionalGids). BuildKit 0.8 (Docker 20.10) passed none.
  const additionalGids = members.includes(gid) ? [...new Set(members)] : [gid, ...new Set(members)];
  return { uid, gid, additionalGids, home };
}

/**
 * COPY/ADD --chown, and the owner of the directories WORKDIR creates (the stage's USER), as
 * BuildKit reads them (solver/llbsolver/ops/user_linux.go readUser): a number is itself and,
 * without a group, also the gid (`--chown=10` is 10:10); a name is looked up in the image's
 * /etc/passwd and gives that user's uid and primary gid, or 0:0 when there is no such user (BuildKit
 * does not fail); a group name found in /etc/group replaces the gid, one not found leaves it.
 * moby's classic builder differed (it failed on unknown names, and took the gid of the GROUP
 * named like the user).
 */
export async function resolveChown(rootfs: string, spec: string): Promise<ResolvedOwner> {
  const parts = spec.split(':');
  if (parts.length > 2 || parts[0] === '') {
    throw new StratumError(
      'BUILD_FAILED',
      `--chown=${spec}: invalid chown string format (want user, user:group, uid or uid:gid)`,
    );
  }
  const userArg = parts[0]!;
  const groupArg = parts[1];
  const what = `--chown=${spec}`;

  let uid = 0;
  let gid = 0;
  const numericUid = parseId(userArg);
  if (numericUid !== undefined) {
    uid = checkRange(numericUid, what);
    gid = uid;
  } else {
    const entry = (await readPasswd(rootfs)).find((candidate) => candidate.name === userArg);
    if (entry !== undefined) ({ uid, gid } = entry);
  }
  if (groupArg !== undefined) {
    const numericGid = parseId(groupArg);
    if (numericGid !== undefined) gid = checkRange(numericGid, what);
    else {
      const entry = (await readGroup(rootfs)).find((group) => group.name === groupArg);
      if (entry !== undefined) gid = entry.gid;
    }
  }
  return { uid, gid };
}

async function lookupGroup(rootfs: string, groupArg: string, what: string): Promise<number> {
  const numeric = parseId(groupArg);
  if (numeric !== undefined) return checkRange(numeric, what);
  const entry = (await readGroup(rootfs)).find((group) => group.name === groupArg);
  if (entry === undefined) {
    throw new StratumError(
      'NOT_FOUND',
      `${what}: unable to find group ${groupArg}: no matching entries in the image's /etc/group`,
    );
  }
  return entry.gid;
}

/** Go's strconv.Atoi: optional sign, decimal digits. */
function parseId(text: string): number | undefined {
  return /^[+-]?\d+$/.test(text) ? Number(text) : undefined;
}

function checkRange(id: number, what: string): number {
  if (!Number.isSafeInteger(id) || id < 0 || id > maxId) {
    throw new StratumError('BUILD_FAILED', `${what}: id ${id} is outside the range 0..${maxId}`);
  }
  return id;
}

async function readPasswd(rootfs: string): Promise<PasswdEntry[]> {
  const text = await readImageFile(rootfs, '/etc/passwd');
  return records(text).map((fields) => ({
    name: fields[0] ?? '',
    uid: atoi(fields[2]),
    gid: atoi(fields[3]),
    home: fields[5] ?? '',
  }));
}

async function readGroup(rootfs: string): Promise<GroupEntry[]> {
  const text = await readImageFile(rootfs, '/etc/group');
  return records(text).map((fields) => ({
    name: fields[0] ?? '',
    gid: atoi(fields[2]),
    members: (fields[3] ?? '').split(',').filter((member) => member !== ''),
  }));
}

/** runc's parser: trimmed non-empty lines split on ':'; a malformed number reads as 0. */
function records(text: string): string[][] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => line.split(':'));
}

function atoi(field: string | undefined): number {
  const value = field === undefined ? undefined : parseId(field);
  return value ?? 0;
}

/**
 * Reads a small file of the image, resolved inside the rootfs. A missing file reads as empty (as
 * in runc); anything but a regular file (a FIFO could block us, a device could be anything) is
 * refused.
 */
async function readImageFile(rootfs: string, path: string): Promise<string> {
  const hostPath = await existingPathInRoot(rootfs, path);
  if (hostPath === undefined) return '';
  // Synchronous calls: two small files read on every RUN's path, where each asynchronous call
  // was a thread-pool round trip (see snapshot/resolve.ts).
  const fd = openSync(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) {
      throw new StratumError(
        'UNSAFE_PATH',
        `${path} in the image is not a regular file; refusing to read it`,
      );
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
