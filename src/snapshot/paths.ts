/**
 * Path helpers shared by scan, diff, writer and extractor. Paths inside a tree are relative,
 * '/'-separated and never start with './' or '/'. A name that is not UTF-8 is escaped in its
 * string (oci/file-names.ts).
 */

import { isPlainName, nameBytes } from '../util/file-names.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** The in-layer name of the whiteout for a deleted path: `.wh.<name>` in the same directory. */
export function whiteoutPath(path: string): string {
  return joinRel(parentOf(path), WHITEOUT_PREFIX + baseOf(path));
}

/**
 * Compares two strings in UTF-8 byte order without encoding them. UTF-16 code units sort like
 * code points (and so like UTF-8 bytes) except that surrogates (U+10000 and up) must sort after
 * U+E000..U+FFFF; shifting them up fixes that. A name with escaped bytes (lone surrogates) is
 * compared by its bytes, so it sorts where Go's byte order puts it.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if ((ca >= 0xd800 && ca < 0xe000) || (cb >= 0xd800 && cb < 0xe000)) {
      if (!isPlainName(a) || !isPlainName(b)) return Buffer.compare(nameBytes(a), nameBytes(b));
    }
    if (ca >= 0xd800 && ca < 0xe000) ca += 0x10000;
    if (cb >= 0xd800 && cb < 0xe000) cb += 0x10000;
    return ca - cb;
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

/**
 * Layer order: component by component in byte order, so a directory comes straight before its
 * own subtree (what a sorted depth-first walk gives, as BuildKit's and Docker's walkers do), and
 * within one directory the whiteouts come before every other entry so an extractor that applies
 * entries in order never deletes something this same layer added.
 *
 * Layer order of two paths (`whiteout`: the path's own whiteout rather than the path): the
 * paths split at '/', compared component by component with compareUtf8, a whiteout first among
 * the entries of its directory, a path before those below it. Done in place rather than by
 * splitting: keys of split paths for 20,000 changes were garbage that cost more than the
 * comparisons (a RUN creating 20,000 files, bench/README.md W-many).
 * test/snapshot/layer-order.test.ts checks it against the split form.
 */
export function compareLayerOrder(a: string, aWhiteout: boolean, b: string, bWhiteout: boolean): number {
  const n = Math.min(a.length, b.length);
  let same = 0;
  while (same < n && a.charCodeAt(same) === b.charCodeAt(same)) same++;
  // Every component before the one holding the first difference is equal in both and is not
  // the last of either (a slash follows it in both), so only this component decides.
  const start = same === 0 ? 0 : a.lastIndexOf('/', same - 1) + 1;
  const aEnd = a.indexOf('/', start);
  const bEnd = b.indexOf('/', start);
  const aLast = aEnd < 0;
  const bLast = bEnd < 0;
  const aw = aWhiteout && aLast;
  const bw = bWhiteout && bLast;
  if (aw !== bw) return aw ? -1 : 1;
  const aDone = same === a.length || a.charCodeAt(same) === SLASH;
  const bDone = same === b.length || b.charCodeAt(same) === SLASH;
  if (aDone && bDone) {
    // This component is equal in both: the path with fewer components comes first.
    if (aLast === bLast) return 0;
    return aLast ? -1 : 1;
  }
  // One component is a prefix of the other (the shorter first), or they differ at `same`.
  if (aDone) return -1;
  if (bDone) return 1;
  const ca = a.charCodeAt(same);
  const cb = b.charCodeAt(same);
  if ((ca >= 0xd800 && ca < 0xe000) || (cb >= 0xd800 && cb < 0xe000)) {
    return compareUtf8(a.slice(start, aLast ? a.length : aEnd), b.slice(start, bLast ? b.length : bEnd));
  }
  return ca - cb;
}
