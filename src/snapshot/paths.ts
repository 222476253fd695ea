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

/**
 * Layer order: component by component in byte order, so a directory comes straight before its
 * own subtree (what a sorted depth-first walk gives, as BuildKit's and Docker's walkers do), and
 * within one directory the whiteouts come before every other entry so an extractor that applies
 * entries in order never deletes something this same layer added.
 */
export interface OrderKey {
  readonly parts: readonly string[];
  readonly whiteout: boolean;
}

export function orderKey(path: string, whiteout: boolean): OrderKey {
  return { parts: path.split('/'), whiteout };
}

export function compareOrderKeys(a: OrderKey, b: OrderKey): number {
  const n = Math.min(a.parts.length, b.parts.length);
  for (let i = 0; i < n; i++) {
    const pa = a.parts[i]!;
    const pb = b.parts[i]!;
    const aw = a.whiteout && i === a.parts.length - 1;
    const bw = b.whiteout && i === b.parts.length - 1;
    if (aw !== bw) return aw ? -1 : 1;
    if (pa !== pb) return compareUtf8(pa, pb);
  }
  return a.parts.length - b.parts.length;
}
