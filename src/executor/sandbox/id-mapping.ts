import { accessSync, constants, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { StratumError, errnoCode } from '../../errors.js';
import {
  idMapped,
  userNamespaceIds,
  type IdRange,
  type UserNamespaceIds,
} from '../../util/user-namespace.js';
import type { SandboxSpec } from './types.js';

/**
 * How the step's ids relate to the host's:
 * - `host`: stratum is root; no user namespace, ids are the host's.
 * - `subordinate`: not root, but /etc/subuid and /etc/subgid give the caller a range and
 *   newuidmap/newgidmap (Debian package uidmap) are installed: the caller becomes 0 and the range
 *   becomes 1..count (podman's layout), so USER with other ids and supplementary groups work.
 * - `root-only`: not root, no range: `--map-root-user` maps the caller alone, to 0.
 * - `namespace`: root of a user namespace stratum already runs in (a rootless stratum
 *   re-executes itself in one, see src/user-namespace.ts; or a container's): steps make no
 *   namespace of their own, and only the ids it maps can be used.
 */
export type IdMapping =
  | { readonly kind: 'host' }
  | {
      readonly kind: 'namespace';
      readonly user: string;
      readonly ids: UserNamespaceIds;
      /** Made by a rootless stratum for itself (not a container's): its refusals name /etc/subuid. */
      readonly ownLayout: boolean;
    }
  | { readonly kind: 'root-only'; readonly user: string }
  | {
      readonly kind: 'subordinate';
      readonly user: string;
      readonly uids: SubordinateRange;
      readonly gids: SubordinateRange;
    };

export interface SubordinateRange {
  readonly start: number;
  readonly count: number;
}

/** Set by a rootless stratum for the copy of itself it runs in its user namespace: who it is. */
export const ROOTLESS_USER_ENV = 'STRATUM_ROOTLESS_USER';

export async function chooseIdMapping(): Promise<IdMapping> {
  const uid = process.getuid?.();
  if (uid === 0) {
    const ids = userNamespaceIds();
    if (ids === undefined) return { kind: 'host' };
    const user = process.env[ROOTLESS_USER_ENV];
    return { kind: 'namespace', user: user ?? 'root', ids, ownLayout: user !== undefined };
  }
  const name = currentUserName();
  const user = name ?? String(uid);
  // Both files list ranges per USER (name or uid), the group ranges too.
  const keys = [String(uid), ...(name === undefined ? [] : [name])];
  const [uids, gids, newuidmap, newgidmap] = await Promise.all([
    firstRange('/etc/subuid', keys),
    firstRange('/etc/subgid', keys),
    onPath('newuidmap'),
    onPath('newgidmap'),
  ]);
  if (uids !== undefined && gids !== undefined && newuidmap && newgidmap) {
    return { kind: 'subordinate', user, uids, gids };
  }
  return { kind: 'root-only', user };
}

/** The unshare options that set the mapping up. */
export function unshareMappingArgs(mapping: IdMapping): string[] {
  switch (mapping.kind) {
    case 'host':
    case 'namespace':
      return [];
    case 'root-only':
      return ['--map-root-user'];
    case 'subordinate':
      return [
        '--map-user=0',
        '--map-group=0',
        `--map-users=${mapping.uids.start},1,${mapping.uids.count}`,
        `--map-groups=${mapping.gids.start},1,${mapping.gids.count}`,
      ];
  }
}

export type OwnerMap = (uid: number, gid: number) => readonly [number, number];

/**
 * How a file's owner on disk reads inside the step's namespace, which is what its layer
 * records: our own ids are 0, a subordinate range's start+k is k+1 (USER 1000 made host
 * start+999). Undefined as root (the ids are the host's). Ids outside the mapping stay as they
 * are (files we could not give away keep ours, which reads as 0).
 */
export function ownerInNamespace(mapping: IdMapping): OwnerMap | undefined {
  // In a namespace already entered, what is on disk reads as the namespace's ids.
  if (mapping.kind === 'host' || mapping.kind === 'namespace') return undefined;
  const ownUid = process.getuid?.() ?? 0;
  const ownGid = process.getgid?.() ?? 0;
  const inside = (id: number, own: number, range: SubordinateRange | undefined): number => {
    if (id === own) return 0;
    if (range !== undefined && id >= range.start && id < range.start + range.count)
      return id - range.start + 1;
    return id;
  };
  const uids = mapping.kind === 'subordinate' ? mapping.uids : undefined;
  const gids = mapping.kind === 'subordinate' ? mapping.gids : undefined;
  return (uid, gid) => [inside(uid, ownUid, uids), inside(gid, ownGid, gids)];
}

/** Whether the step may call setgroups(2) (a namespace set up by --map-root-user denies it). */
export function canSetGroups(mapping: IdMapping): boolean {
  if (mapping.kind === 'namespace') return mapping.ids.setgroups;
  return mapping.kind !== 'root-only';
}

/** Whether a gid is valid inside the step's namespace. */
export function gidMapped(mapping: IdMapping, gid: number): boolean {
  switch (mapping.kind) {
    case 'host':
      return true;
    case 'namespace':
      return idMapped(mapping.ids.gids, gid);
    case 'root-only':
      return gid === 0;
    case 'subordinate':
      return gid <= mapping.gids.count;
  }
}

/** What an id other than 0 needs without root (the end of a refusal). */
function rangeNeeded(user: string): string {
  return `root, or a subordinate id range for ${user} in /etc/subuid and /etc/subgid with newuidmap and newgidmap installed (Debian package uidmap): without them only your own user is mapped, as root`;
}

function outsideRange(user: string, count: number): string {
  return `outside the ids mapped for ${user} (0 and 1..${count} from /etc/subuid and /etc/subgid); give ${user} a larger range`;
}

/**
 * The namespace stratum runs in, as the layout that made it when it has one of the two shapes
 * a rootless stratum makes (root alone; root and 1..n), so that refusals read the same as a
 * step's own namespace would have them; undefined for another shape (a container's).
 */
function madeLayout(mapping: {
  readonly user: string;
  readonly ids: UserNamespaceIds;
  readonly ownLayout: boolean;
}): Exclude<IdMapping, { kind: 'host' } | { kind: 'namespace' }> | undefined {
  if (!mapping.ownLayout) return undefined;
  const countFromZero = (ranges: readonly IdRange[]): number | undefined => {
    let next = 0;
    for (const range of [...ranges].sort((a, b) => a.inside - b.inside)) {
      if (range.inside !== next) return undefined;
      next += range.count;
    }
    return next === 0 ? undefined : next;
  };
  const uids = countFromZero(mapping.ids.uids);
  const gids = countFromZero(mapping.ids.gids);
  if (uids === undefined || gids === undefined) return undefined;
  if (uids === 1 && gids === 1) return { kind: 'root-only', user: mapping.user };
  return {
    kind: 'subordinate',
    user: mapping.user,
    uids: { start: 0, count: uids - 1 },
    gids: { start: 0, count: gids - 1 },
  };
}

/** The end of a refusal in a namespace of another shape: the ids it maps. */
function outsideNamespace(ids: UserNamespaceIds): string {
  const mapped = (ranges: readonly IdRange[]): string =>
    ranges.map((range) => `${range.inside}..${range.inside + range.count - 1}`).join(', ');
  return `outside the ids this user namespace maps (uids ${mapped(ids.uids)}, gids ${mapped(ids.gids)})`;
}

/** Refuses, with what is missing, a spec whose ids the mapping cannot represent. */
export function checkSpecIds(spec: SandboxSpec, mapping: IdMapping): void {
  switch (mapping.kind) {
    case 'host':
      return;
    case 'namespace': {
      const made = madeLayout(mapping);
      if (made !== undefined) {
        checkSpecIds(mapping.ids.setgroups ? spec : { ...spec, additionalGids: [] }, made);
        return;
      }
      const gids = mapping.ids.setgroups ? [spec.gid, ...spec.additionalGids] : [spec.gid];
      if (!idMapped(mapping.ids.uids, spec.uid) || !gids.every((gid) => idMapped(mapping.ids.gids, gid))) {
        throw new StratumError(
          'UNSUPPORTED',
          `RUN as uid ${spec.uid} gid ${gids.join(',')} is ${outsideNamespace(mapping.ids)}`,
        );
      }
      return;
    }
    case 'root-only':
      if (spec.uid !== 0 || spec.gid !== 0) {
        throw new StratumError(
          'UNSUPPORTED',
          `RUN as uid ${spec.uid} gid ${spec.gid} needs ${rangeNeeded(mapping.user)}`,
        );
      }
      return;
    case 'subordinate': {
      const badUid = spec.uid > mapping.uids.count ? spec.uid : undefined;
      const badGid = [spec.gid, ...spec.additionalGids].find((gid) => gid > mapping.gids.count);
      if (badUid !== undefined || badGid !== undefined) {
        throw new StratumError(
          'UNSUPPORTED',
          `RUN as ${badUid !== undefined ? `uid ${badUid}` : `gid ${badGid}`} is ${outsideRange(mapping.user, badUid !== undefined ? mapping.uids.count : mapping.gids.count)}`,
        );
      }
      return;
    }
  }
}

/** Refuses a file owner (COPY --chown, a kept source owner) the mapping cannot hold on disk. */
export function checkOwnerMapped(mapping: IdMapping, owner: { uid: number; gid: number }): void {
  switch (mapping.kind) {
    case 'host':
      return;
    case 'namespace': {
      const made = madeLayout(mapping);
      if (made !== undefined) {
        checkOwnerMapped(made, owner);
        return;
      }
      if (!idMapped(mapping.ids.uids, owner.uid) || !idMapped(mapping.ids.gids, owner.gid)) {
        throw new StratumError(
          'UNSUPPORTED',
          `files owned by uid ${owner.uid} gid ${owner.gid} are ${outsideNamespace(mapping.ids)}`,
        );
      }
      return;
    }
    case 'root-only':
      if (owner.uid !== 0 || owner.gid !== 0) {
        throw new StratumError(
          'UNSUPPORTED',
          `files owned by uid ${owner.uid} gid ${owner.gid} need ${rangeNeeded(mapping.user)}`,
        );
      }
      return;
    case 'subordinate':
      if (owner.uid > mapping.uids.count || owner.gid > mapping.gids.count) {
        throw new StratumError(
          'UNSUPPORTED',
          `files owned by uid ${owner.uid} gid ${owner.gid} are ${outsideRange(mapping.user, Math.min(mapping.uids.count, mapping.gids.count))}`,
        );
      }
      return;
  }
}

function currentUserName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined; // no passwd entry for our uid
  }
}

/** The first `name_or_id:start:count` line of a subid file whose owner is one of `keys`. */
async function firstRange(file: string, keys: readonly string[]): Promise<SubordinateRange | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  for (const line of text.split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if (owner === undefined || !keys.includes(owner)) continue;
    const range = { start: Number(start), count: Number(count) };
    if (Number.isSafeInteger(range.start) && Number.isSafeInteger(range.count) && range.count > 0)
      return range;
  }
  return undefined;
}

/** Whether an executable `command` is on the PATH. */
export function onPath(command: string): Promise<boolean> {
  // Synchronous and without exceptions for the directories that lack it: this runs beside a
  // build's first step, where an asynchronous access(2) that fails (an Error built each time)
  // per PATH directory cost ~6 ms of the main thread.
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (dir === '') continue;
    const path = join(dir, command);
    if (!existsSync(path)) continue;
    try {
      accessSync(path, constants.X_OK);
      return Promise.resolve(true);
    } catch {
      // there, but not executable by us
    }
  }
  return Promise.resolve(false);
}
