import type { Digest } from '../oci/types.js';

/**
 * An in-memory model of an image's root filesystem, built by applying layer tars in order with
 * Docker's rules. Paths are relative, `/`-separated, without `./` or a trailing `/` ("etc/passwd");
 * the root itself is not an entry. Content is kept as a sha256 (and coarse block hashes for
 * copy-up detection), never as bytes.
 */

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';

/** What the model knows about one path: the fields `diff` compares. */
export interface FsEntry {
  readonly type: EntryType;
  /** Permission bits plus setuid, setgid and sticky (mode & 0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Content length for regular files; 0 otherwise. */
  readonly size: number;
  /** sha256 of a regular file's content. */
  readonly sha256?: Digest;
  /** A symlink's target as written. */
  readonly linkTarget?: string;
  readonly devMajor?: number;
  readonly devMinor?: number;
  /** Whole seconds since the epoch (tar headers carry no more unless PAX says so). */
  readonly mtime: number;
}

/**
 * One inode of the model. Hard links (tar type 1) share the node of their target, which is what
 * "same identity" means here: a group is the set of paths that point at one node.
 */
export interface FsNode {
  readonly id: number;
  readonly entry: FsEntry;
  /** Per-block hashes of a regular file's content (see BLOCK_SIZE), to tell small edits apart. */
  readonly blocks: readonly string[];
  /** Index of the layer (in manifest order) whose tar carried this content. */
  readonly layer: number;
  /** The path the layer wrote it under. */
  readonly addedAs: string;
  /** Directory created because a child needed it, with no entry of its own in any layer. */
  readonly implicit: boolean;
}

/** Block size for copy-up detection: small enough to see a few-byte edit in a big file. */
export const BLOCK_SIZE = 16 * 1024;

/** The mutable state the applier works on; readers use the functions below. */
export interface FsState {
  readonly nodes: Map<string, FsNode>;
  /** Directory path ('' for the root) → full paths of its children. */
  readonly children: Map<string, Set<string>>;
}

export function emptyState(): FsState {
  return { nodes: new Map(), children: new Map([['', new Set()]]) };
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * A tar member name → model path: leading `/` and `./` dropped, `.` components removed, trailing
 * `/` dropped. Returns undefined for the root and for names that climb out (`..`): extractors
 * refuse those, and they cannot describe anything inside the image.
 */
export function normalizePath(name: string): string | undefined {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return undefined;
    parts.push(part);
  }
  return parts.length === 0 ? undefined : parts.join('/');
}

/** Every path below `path` (not `path` itself), deepest last. */
export function descendants(state: FsState, path: string): string[] {
  const out: string[] = [];
  const stack = [path];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const kids = state.children.get(dir);
    if (kids === undefined) continue;
    for (const kid of kids) {
      out.push(kid);
      stack.push(kid);
    }
  }
  return out;
}

/** Removes one path (and its child list) from the state; the caller handles descendants. */
export function removePath(state: FsState, path: string): void {
  state.nodes.delete(path);
  state.children.delete(path);
  state.children.get(parentOf(path))?.delete(path);
}

export function setNode(state: FsState, path: string, node: FsNode): void {
  state.nodes.set(path, node);
  let kids = state.children.get(parentOf(path));
  if (kids === undefined) {
    kids = new Set();
    state.children.set(parentOf(path), kids);
  }
  kids.add(path);
  if (node.entry.type === 'dir' && !state.children.has(path)) state.children.set(path, new Set());
  if (node.entry.type !== 'dir') state.children.delete(path);
}

/** Paths grouped by node: every group of two or more paths (hard links), sorted. */
export function hardLinkGroups(state: FsState): Map<string, readonly string[]> {
  const byNode = new Map<number, string[]>();
  for (const [path, node] of state.nodes) {
    if (node.entry.type === 'dir') continue;
    const list = byNode.get(node.id);
    if (list === undefined) byNode.set(node.id, [path]);
    else list.push(path);
  }
  const out = new Map<string, readonly string[]>();
  for (const paths of byNode.values()) {
    if (paths.length < 2) continue;
    paths.sort();
    for (const path of paths) out.set(path, paths);
  }
  return out;
}

/** The fields `diff` compares, in report order. */
export type EntryField =
  'type' | 'mode' | 'uid' | 'gid' | 'size' | 'content' | 'linkTarget' | 'device' | 'mtime';

/** Which fields differ between two entries (content: the sha256; mtime only with `times`). */
export function entryDifferences(a: FsEntry, b: FsEntry, times: boolean): EntryField[] {
  const out: EntryField[] = [];
  if (a.type !== b.type) out.push('type');
  if (a.mode !== b.mode) out.push('mode');
  if (a.uid !== b.uid) out.push('uid');
  if (a.gid !== b.gid) out.push('gid');
  // Across types, size, content, link target and device say nothing more than the type does.
  if (a.type === b.type) {
    if (a.size !== b.size) out.push('size');
    if (a.sha256 !== b.sha256) out.push('content');
    if (a.linkTarget !== b.linkTarget) out.push('linkTarget');
    if (a.devMajor !== b.devMajor || a.devMinor !== b.devMinor) out.push('device');
  }
  if (times && a.mtime !== b.mtime) out.push('mtime');
  return out;
}

/** A read-only, plain view of the model at one moment (for callers that keep it). */
export interface FsSnapshot {
  readonly entries: ReadonlyMap<string, FsEntry>;
  /** Path → all paths of its hard-link group (only for paths in a group of two or more). */
  readonly hardLinks: ReadonlyMap<string, readonly string[]>;
}

export function snapshotState(state: FsState): FsSnapshot {
  const entries = new Map<string, FsEntry>();
  for (const path of [...state.nodes.keys()].sort()) entries.set(path, state.nodes.get(path)!.entry);
  return { entries, hardLinks: hardLinkGroups(state) };
}
