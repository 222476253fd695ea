import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { StratumError } from '../errors.js';
import { fsPath } from '../util/file-names.js';
import { compareLayerOrder, parentOf } from './paths.js';
import type { LayerChange, EntryMeta, EntryStat, LayerDiff, TreeSnapshot } from './types.js';

const NS_PER_SEC = 1_000_000_000n;

export function entryMeta(stat: EntryStat): EntryMeta {
  // Floor division so times before 1970 still give a non-negative nanosecond part.
  let sec = stat.mtimeNs / NS_PER_SEC;
  let nsec = stat.mtimeNs % NS_PER_SEC;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS_PER_SEC;
  }
  const base = {
    type: stat.type,
    mode: stat.mode,
    uid: stat.uid,
    gid: stat.gid,
    size: stat.size,
    mtimeSec: Number(sec),
    mtimeNsec: Number(nsec),
  };
  if (stat.type === 'symlink') return { ...base, linkTarget: stat.linkTarget ?? '' };
  if (stat.type === 'char' || stat.type === 'block') {
    return { ...base, devMajor: deviceMajor(stat.rdev), devMinor: deviceMinor(stat.rdev) };
  }
  return base;
}

/** glibc's gnu_dev_major/gnu_dev_minor encoding of dev_t. */
export function deviceMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
export function deviceMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

/**
 * Same tree, two moments: any lstat field that differs means the path changed. ctime and inode
 * catch what mtime alone misses (a `touch -d` back to the old time, a file replaced by a copy, a
 * new hard link or a chmod, which changes ctime only).
 */
function statDiffers(b: EntryStat, a: EntryStat): boolean {
  if (a.type === 'dir' && b.type === 'dir') {
    // A directory's ctime, size and link count move whenever an entry is added or removed in it
    // (the children show up in the diff themselves), and the RUN sandbox creates and removes
    // mount points, restoring the parent's mtime exactly. What a layer records of a directory
    // itself is its mode, owner and mtime; a directory replaced by another has a new inode.
    return (
      b.mode !== a.mode ||
      b.uid !== a.uid ||
      b.gid !== a.gid ||
      b.mtimeNs !== a.mtimeNs ||
      b.ino !== a.ino ||
      b.dev !== a.dev
    );
  }
  return (
    b.mode !== a.mode ||
    b.uid !== a.uid ||
    b.gid !== a.gid ||
    b.size !== a.size ||
    b.mtimeNs !== a.mtimeNs ||
    b.ctimeNs !== a.ctimeNs ||
    b.ino !== a.ino ||
    b.dev !== a.dev ||
    b.nlink !== a.nlink ||
    b.rdev !== a.rdev ||
    b.linkTarget !== a.linkTarget
  );
}

/**
 * A same-tree entry whose stat is unchanged can still hide a change when the filesystem keeps
 * whole-second timestamps and the change happened in the very second the first scan ran (git
 * calls such entries "racily clean"). The old content is gone, so there is nothing to compare
 * against: treat it as modified. On filesystems with nanosecond ctime this never triggers.
 */
function racy(before: TreeSnapshot, a: EntryStat): boolean {
  if (a.ctimeNs % NS_PER_SEC !== 0n) return false;
  return a.ctimeNs >= (before.startedNs / NS_PER_SEC) * NS_PER_SEC;
}

/**
 * Two different trees (say a lower layer extracted from a tar and a copy of it): inode, ctime and
 * nlink always differ, so compare what a tar can carry, with containerd's rule for mtimes: equal
 * to the second and both nanosecond parts 0 means one side may have been truncated by a tar, so
 * compare the content; otherwise the nanoseconds must match too.
 */
async function differsAcrossTrees(
  before: TreeSnapshot,
  after: TreeSnapshot,
  path: string,
  b: EntryStat,
  a: EntryStat,
): Promise<boolean> {
  if (b.mode !== a.mode || b.uid !== a.uid || b.gid !== a.gid || b.rdev !== a.rdev) return true;
  if (b.linkTarget !== a.linkTarget) return true;
  if (a.type === 'dir') return false;
  if (b.size !== a.size) return true;
  const bSec = b.mtimeNs / NS_PER_SEC;
  const aSec = a.mtimeNs / NS_PER_SEC;
  if (bSec !== aSec) return true;
  const bothTruncated = b.mtimeNs % NS_PER_SEC === 0n && a.mtimeNs % NS_PER_SEC === 0n;
  if (!bothTruncated) return b.mtimeNs !== a.mtimeNs;
  if (a.type !== 'file' || a.size === 0) return false;
  return !(await sameContent(join(before.root, path), join(after.root, path)));
}

async function sameContent(pathA: string, pathB: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(fsPath(pathA), 'r'), open(fsPath(pathB), 'r')]);
  try {
    const size = 1 << 16;
    const ba = Buffer.allocUnsafe(size);
    const bb = Buffer.allocUnsafe(size);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, size, null), fb.read(bb, 0, size, null)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/**
 * What changed from `before` to `after` (a scan of `root`). Reads file content only for entries
 * whose stat is ambiguous (two-tree diffs, see differsAcrossTrees); never hashes the tree.
 */
export async function diffSnapshots(
  before: TreeSnapshot,
  after: TreeSnapshot,
  root: string = after.root,
  options: { signal?: AbortSignal } = {},
): Promise<LayerDiff> {
  const sameTree = before.root === after.root;
  // Sockets cannot be carried by a tar (Docker skips them): to the diff they do not exist.
  const beforeGet = (path: string): EntryStat | undefined => {
    const stat = before.entries.get(path);
    return stat?.type === 'socket' ? undefined : stat;
  };
  const afterGet = (path: string): EntryStat | undefined => {
    const stat = after.entries.get(path);
    return stat?.type === 'socket' ? undefined : stat;
  };
  const emitted = new Map<string, LayerChange>();
  const linkGroups = new Map<string, string[]>();

  let count = 0;
  for (const [path, a] of after.entries) {
    if (++count % 4096 === 0 && options.signal?.aborted === true) {
      throw new StratumError('ABORTED', `diff of ${root} aborted`);
    }
    if (a.type === 'socket') continue;
    if (a.type === 'file' && a.nlink > 1) {
      const key = `${a.dev}:${a.ino}`;
      const group = linkGroups.get(key);
      if (group) group.push(path);
      else linkGroups.set(key, [path]);
    }
    const b = beforeGet(path);
    if (b === undefined) {
      emitted.set(path, { kind: 'added', path, meta: entryMeta(a) });
    } else if (b.type !== a.type) {
      emitted.set(path, { kind: 'typeChanged', path, from: b.type, meta: entryMeta(a) });
    } else if (
      sameTree ? statDiffers(b, a) || racy(before, a) : await differsAcrossTrees(before, after, path, b, a)
    ) {
      emitted.set(path, { kind: 'modified', path, meta: entryMeta(a) });
    }
  }

  const deleted: LayerChange[] = [];
  for (const [path, b] of before.entries) {
    if (b.type === 'socket' || afterGet(path) !== undefined) continue;
    // One whiteout at the top of a deleted subtree: skip paths whose parent is gone too, or
    // whose parent turned into something else (its own whiteout covers them).
    const parent = parentOf(path);
    if (parent !== '') {
      const parentAfter = afterGet(parent);
      if (parentAfter === undefined) continue;
      if (beforeGet(parent)?.type !== parentAfter.type) continue;
    }
    deleted.push({ kind: 'deleted', path, type: b.type });
  }

  // Hard links: if any member of an inode's group is in the layer, all of them must be, so the
  // extracted layer has the same link structure (Docker re-emits a lower file that gains a link).
  for (const group of linkGroups.values()) {
    if (group.length < 2 || !group.some((path) => emitted.has(path))) continue;
    for (const path of group) {
      if (!emitted.has(path)) {
        emitted.set(path, { kind: 'modified', path, meta: entryMeta(after.entries.get(path)!) });
      }
    }
  }

  // Parents: every emitted path and every whiteout needs its directories in the layer.
  const parents = new Map<string, LayerChange>();
  const addParents = (path: string): void => {
    for (let dir = parentOf(path); dir !== ''; dir = parentOf(dir)) {
      if (emitted.has(dir) || parents.has(dir)) return;
      const stat = after.entries.get(dir);
      if (stat === undefined) return;
      parents.set(dir, { kind: 'parent', path: dir, meta: entryMeta(stat) });
    }
  };
  for (const path of emitted.keys()) addParents(path);
  for (const change of deleted) addParents(change.path);

  const ordered = [...emitted.values(), ...parents.values(), ...deleted];
  ordered.sort((x, y) => compareLayerOrder(x.path, x.kind === 'deleted', y.path, y.kind === 'deleted'));

  // The first member of each group in layer order is written as the file, the rest link to it.
  const hardLinkGroups: string[][] = [];
  const linkTo = new Map<string, string>();
  for (const group of linkGroups.values()) {
    const members = group.filter((path) => emitted.has(path));
    if (members.length < 2) continue;
    const sorted = members.sort((x, y) => compareLayerOrder(x, false, y, false));
    hardLinkGroups.push(sorted);
    for (const path of sorted.slice(1)) linkTo.set(path, sorted[0]!);
  }
  hardLinkGroups.sort((x, y) => compareLayerOrder(x[0]!, false, y[0]!, false));

  const changes = ordered.map((change): LayerChange => {
    const target = linkTo.get(change.path);
    if (target === undefined || change.kind === 'deleted') return change;
    return { ...change, meta: { ...change.meta, hardLinkTo: target } };
  });

  return { root, changes, hardLinkGroups };
}

/** True when a step changed nothing: Docker then records `empty_layer: true` and writes no layer. */
export function isEmptyDiff(diff: LayerDiff): boolean {
  return diff.changes.length === 0;
}
