import { StratumError } from '../errors.js';
import { OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from './paths.js';

/**
 * The one set of layer-application rules (Docker's moby pkg/archive UnpackLayer), shared by the
 * disk target (extract.ts, plain or overlay form) and the model target (analyze/apply.ts):
 * - names are relative; `./` is fine, the root itself (`.`, `./`, `/`) carries nothing to apply,
 *   and an absolute name, a `..` component or a NUL is refused (UNSAFE_PATH);
 * - `.wh..wh..opq` clears its directory's lower-layer content; other `.wh..wh.*` names are aufs
 *   bookkeeping and are ignored; `.wh.NAME` removes NAME and its subtree;
 * - both kinds of whiteout only remove what this layer did not write (`LayerWrites`), so where
 *   they sit in the tar does not matter: an opaque marker after the layer's own files in that
 *   directory hides only the lower content, as if it had come first;
 * - a directory over a directory merges; any other entry replaces what is there, subtree and all.
 * Parents are resolved by resolve.ts with `atRoot: 'refuse'` by both targets.
 */

export type ClassifiedEntry =
  | { readonly kind: 'root' }
  /** aufs bookkeeping (`.wh..wh.plnk`, ...): nothing to apply. */
  | { readonly kind: 'meta' }
  | { readonly kind: 'opaque'; readonly parent: readonly string[] }
  | { readonly kind: 'whiteout'; readonly parent: readonly string[]; readonly victim: string }
  | { readonly kind: 'entry'; readonly parent: readonly string[]; readonly name: string };

/** Splits and checks a layer entry's name; `what` names it in errors (layer and entry). */
export function classifyEntry(name: string, what: string): ClassifiedEntry {
  if (/^\/+$/.test(name)) return { kind: 'root' }; // umoci names the root "/"
  if (name.startsWith('/')) throw new StratumError('UNSAFE_PATH', `${what}: absolute name refused`);
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new StratumError('UNSAFE_PATH', `${what}: '..' in the name refused`);
  if (parts.some((part) => part.includes('\0'))) {
    throw new StratumError('UNSAFE_PATH', `${what}: NUL in the name refused`);
  }
  if (parts.length === 0) return { kind: 'root' };
  const base = parts[parts.length - 1]!;
  const parent = parts.slice(0, -1);
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque', parent };
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: 'meta' };
  if (base.startsWith(WHITEOUT_PREFIX)) {
    const victim = base.slice(WHITEOUT_PREFIX.length);
    if (victim === '' || victim === '.' || victim === '..') {
      throw new StratumError('UNSAFE_PATH', `${what}: whiteout of "${victim}" refused`);
    }
    return { kind: 'whiteout', parent, victim };
  }
  return { kind: 'entry', parent, name: base };
}

/**
 * What the layer wrote so far, as resolved in-root paths ('' is the root): each written path and
 * every directory above it, which a whiteout or opaque marker of this same layer must keep.
 */
export class LayerWrites {
  private readonly paths = new Set<string>();

  add(path: string): void {
    for (let p = path; p !== '' && !this.paths.has(p); p = p.slice(0, Math.max(0, p.lastIndexOf('/')))) {
      this.paths.add(p);
    }
  }

  has(path: string): boolean {
    return this.paths.has(path);
  }
}

/** An existing entry of `existing` type is replaced (removed with its subtree) by `incoming`. */
export function replacesExisting(existing: 'dir' | 'other', incomingIsDir: boolean): boolean {
  return !(existing === 'dir' && incomingIsDir);
}

/**
 * What a `.wh.NAME` does to NAME: remove it (and its subtree) when this layer did not write it;
 * when it did, only the lower content under it goes (`prune` a directory, `keep` anything else).
 */
export function whiteoutEffect(writtenByLayer: boolean, isDir: boolean): 'remove' | 'prune' | 'keep' {
  if (!writtenByLayer) return 'remove';
  return isDir ? 'prune' : 'keep';
}

/** An in-root path for `name` in the directory `dir` ('' is the root). */
export function childPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}
