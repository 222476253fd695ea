// Applies an image's layers to the filesystem model that diff and analyze read: the model target
// of the layer driver (snapshot/apply-layer.ts, which makes every decision of the layer rules).
// Over ~400 lines because one pass per layer does three jobs that must agree entry by entry: the
// effects on the model, what each entry hid or re-emitted (waste, copy-ups), and content hashes
// read once while the tar streams by.
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StratumError, isStratumError } from '../errors.js';
import type { ImageSource } from '../oci/image.js';
import { openLayerTar } from '../oci/layer.js';
import type { Descriptor, Digest, History } from '../oci/types.js';
import {
  applyLayer,
  type AppliedLayer,
  type EntryBody,
  type LayerEntry,
  type LayerTarget,
} from '../snapshot/apply-layer.js';
import type { LayerWrites } from '../snapshot/layer-rules.js';
import type { Lookup } from '../snapshot/resolve.js';
import { byteExactExtract } from '../snapshot/tar-reader.js';
import {
  BLOCK_SIZE,
  descendants,
  emptyState,
  entryDifferences,
  removePath,
  setNode,
  type EntryField,
  type EntryType,
  type FsEntry,
  type FsNode,
  type FsState,
} from './fs-model.js';

/**
 * Applies an image's layers, in history order, to an in-memory filesystem model, through the
 * layer driver extraction uses too (snapshot/apply-layer.ts), with the rules Docker's layer
 * applier (moby pkg/archive UnpackLayer) follows:
 * - `.wh.NAME` removes NAME and its subtree from the lower layers;
 * - `.wh..wh..opq` (matched exactly) clears its directory's lower-layer content, wherever it
 *   sits in the tar: both kinds of whiteout only ever remove what this layer did not write, so
 *   their position in the tar does not matter (ggcr and kaniko had bugs here);
 * - other `.wh..wh.*` names are aufs bookkeeping and are ignored;
 * - a directory entry over a directory keeps the children; any other entry replaces what was
 *   there (a directory replaced by a file loses its subtree);
 * - missing parents are created as root-owned 0755 directories; parents that are symlinks are
 *   followed inside the image (chroot semantics), as the applier's OS calls do;
 * - a hard link (type 1) points at its target's node, so the paths share one identity.
 */

/** A path the layer changed, with the entry before and after. */
export interface ChangedEntry {
  readonly path: string;
  /** Fields that differ (mtime included when it differs; see `reemitted` for none). */
  readonly fields: readonly EntryField[];
  readonly before: FsEntry;
  readonly after: FsEntry;
  /**
   * For a regular file whose content changed: how many BLOCK_SIZE blocks differ (appended or
   * cut blocks count), and how many blocks the new content has. A small count on a big file is
   * a few-byte edit that still ships the whole file.
   */
  readonly changedBlocks?: number;
  readonly blocks?: number;
  /** Set when this path is a hard link to another changed path of the layer (same bytes). */
  readonly linkOf?: string;
}

/** Content a layer made unreachable (the last path pointing at it was deleted or replaced). */
export interface HiddenContent {
  /** The path it was added under. */
  readonly path: string;
  /** The layer (manifest index) whose tar carries the bytes. */
  readonly addedBy: number;
  readonly size: number;
  readonly sha256?: Digest;
  readonly how: 'deleted' | 'replaced';
}

/** What one layer did to the filesystem. */
export interface LayerChanges {
  /** Index in the manifest's layers. */
  readonly index: number;
  readonly descriptor: Descriptor;
  readonly diffId: Digest;
  /** Size of the blob as shipped (usually gzip). */
  readonly compressedSize: number;
  /** Size of the uncompressed tar. */
  readonly uncompressedSize: number;
  /** Bytes of regular-file content in the tar (each hard-linked file counted once). */
  readonly contentBytes: number;
  /** Tar members, whiteouts included. */
  readonly tarEntries: number;
  readonly whiteouts: number;
  readonly added: readonly string[];
  readonly changed: readonly ChangedEntry[];
  /** Paths from lower layers this layer removed (whiteouts, opaque dirs, replaced subtrees). */
  readonly deleted: readonly string[];
  /**
   * Entries the layer wrote that change nothing but maybe the mtime (`mtimeChanged`).
   * Directories re-emitted as parents of changes are listed too (`type: 'dir'`).
   */
  readonly reemitted: readonly {
    readonly path: string;
    readonly type: EntryType;
    readonly mtimeChanged: boolean;
  }[];
  readonly hidden: readonly HiddenContent[];
}

/** One history entry and, unless it is an empty layer, the layer it made. */
export interface HistoryStep {
  /** Index in config.history. */
  readonly index: number;
  readonly createdBy: string;
  readonly created?: string;
  readonly comment?: string;
  readonly emptyLayer: boolean;
  readonly layer?: LayerChanges;
}

/** A step as the walk yields it: `fs` is the live model after the step (it keeps changing). */
export interface AppliedStep extends HistoryStep {
  readonly fs: FsState;
}

export interface ApplyOptions {
  readonly signal?: AbortSignal;
}

export interface AppliedImage {
  readonly steps: readonly HistoryStep[];
  readonly layers: readonly LayerChanges[];
  /** The final filesystem. */
  readonly fs: FsState;
}

/** The history entries and the layer index each non-empty one owns; errors when they disagree. */
export function stepsOf(image: ImageSource): {
  history: readonly History[];
  layerOf: (number | undefined)[];
} {
  const config = image.config.value;
  const layers = image.manifest.value.layers;
  const history = config.history ?? [];
  if (history.length === 0) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${image.name}: the config has no history, so its ${layers.length} layer(s) cannot be matched to the steps that made them`,
    );
  }
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${image.name}: the config lists ${diffIds.length} diff_ids but the manifest has ${layers.length} layers`,
    );
  }
  const nonEmpty = history.filter((entry) => entry.empty_layer !== true).length;
  if (nonEmpty !== layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${image.name}: history lists ${nonEmpty} layers but the manifest has ${layers.length}`,
    );
  }
  let next = 0;
  const layerOf = history.map((entry) => (entry.empty_layer === true ? undefined : next++));
  return { history, layerOf };
}

/** Walks the image step by step; the yielded `fs` is live and changes on the next iteration. */
export async function* walkImage(
  image: ImageSource,
  options: ApplyOptions = {},
): AsyncGenerator<AppliedStep, FsState> {
  const { history, layerOf } = stepsOf(image);
  const applier = new Applier();
  for (const [index, entry] of history.entries()) {
    options.signal?.throwIfAborted();
    const layerIndex = layerOf[index];
    const layer =
      layerIndex === undefined ? undefined : await applier.applyLayer(image, layerIndex, options.signal);
    yield {
      index,
      createdBy: entry.created_by ?? '',
      ...(entry.created !== undefined ? { created: entry.created } : {}),
      ...(entry.comment !== undefined ? { comment: entry.comment } : {}),
      emptyLayer: entry.empty_layer === true,
      ...(layer ? { layer } : {}),
      fs: applier.state,
    };
  }
  return applier.state;
}

/** Applies every layer; returns the steps (without the live model) and the final filesystem. */
export async function applyLayers(image: ImageSource, options: ApplyOptions = {}): Promise<AppliedImage> {
  const steps: HistoryStep[] = [];
  const layers: LayerChanges[] = [];
  const applier = walkImage(image, options);
  let fs: FsState = emptyState();
  for await (const step of applier) {
    const { fs: live, ...rest } = step;
    fs = live;
    steps.push(rest);
    if (rest.layer) layers.push(rest.layer);
  }
  return { steps, layers, fs };
}

/** Counts the bytes of the uncompressed tar as they pass. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

interface HashedContent {
  readonly sha256: Digest;
  readonly blocks: string[];
  readonly size: number;
}

/** Hashes a file's content while it streams: whole sha256 plus per-block short hashes. */
async function hashContent(stream: AsyncIterable<Uint8Array>): Promise<HashedContent> {
  const whole = createHash('sha256');
  const blocks: string[] = [];
  let block = createHash('sha1');
  let inBlock = 0;
  let size = 0;
  for await (const data of stream) {
    let chunk = data;
    whole.update(chunk);
    size += chunk.length;
    while (chunk.length > 0) {
      const take = Math.min(BLOCK_SIZE - inBlock, chunk.length);
      block.update(chunk.subarray(0, take));
      inBlock += take;
      chunk = chunk.subarray(take);
      if (inBlock === BLOCK_SIZE) {
        blocks.push(block.digest('base64'));
        block = createHash('sha1');
        inBlock = 0;
      }
    }
  }
  if (inBlock > 0) blocks.push(block.digest('base64'));
  return { sha256: `sha256:${whole.digest('hex')}`, blocks, size };
}

function blockChanges(before: readonly string[], after: readonly string[]): number {
  let changed = Math.abs(before.length - after.length);
  const common = Math.min(before.length, after.length);
  for (let index = 0; index < common; index++) if (before[index] !== after[index]) changed++;
  return changed;
}

/** Holds the model and the per-node reference counts across layers. */
class Applier implements LayerTarget {
  readonly state: FsState = emptyState();
  private nextId = 1;
  private readonly refs = new Map<number, number>();

  // Per-layer bookkeeping, reset by applyLayer.
  private layerIndex = 0;
  private layerName = '';
  private before = new Map<string, FsNode | null>();
  private hidden: HiddenContent[] = [];
  private contentBytes = 0;

  async applyLayer(image: ImageSource, index: number, signal?: AbortSignal): Promise<LayerChanges> {
    const descriptor = image.manifest.value.layers[index]!;
    const diffId = image.config.value.rootfs.diff_ids[index]!;
    this.layerIndex = index;
    this.layerName = `${image.name}: layer ${index + 1} (${descriptor.digest})`;
    this.before = new Map();
    this.hidden = [];
    this.contentBytes = 0;
    const counter = new ByteCounter();
    let applied: AppliedLayer;
    try {
      const stream = await openLayerTar(image, descriptor, { diffId, ...(signal ? { signal } : {}) });
      const extract = byteExactExtract();
      const feeding = pipeline(stream, counter, extract);
      feeding.catch(() => undefined);
      try {
        applied = await applyLayer(extract, this, {
          layerName: this.layerName,
          ...(signal ? { signal } : {}),
        });
        // A digest mismatch is only known at the end of the stream: wait for it.
        await feeding;
      } finally {
        extract.destroy();
      }
    } catch (error) {
      if (isStratumError(error)) throw error;
      if (signal?.aborted === true) throw new StratumError('ABORTED', `${this.layerName}: aborted`);
      const message = error instanceof Error ? error.message : String(error);
      throw new StratumError('INVALID_IMAGE', `${this.layerName}: unreadable layer tar: ${message}`, {
        cause: error,
      });
    }
    return this.summarize(
      descriptor,
      diffId,
      counter.bytes,
      this.contentBytes,
      applied.entries,
      applied.whiteouts,
    );
  }

  // The model target of the layer driver (snapshot/apply-layer.ts): the driver decides, these
  // methods carry the effects out on the model and record what each one hid or re-emitted.

  lookup(path: string): Lookup {
    const node = this.state.nodes.get(path);
    if (node === undefined) return { kind: 'missing' };
    if (node.entry.type === 'dir') return { kind: 'dir' };
    if (node.entry.type === 'symlink') return { kind: 'symlink', target: node.entry.linkTarget ?? '' };
    return { kind: 'other' };
  }

  /** A parent no entry of any layer names: an implicit root-owned 0755 directory. */
  makeDir(path: string): void {
    this.touch(path);
    setNode(this.state, path, {
      id: this.nextId++,
      entry: { type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 },
      blocks: [],
      layer: this.layerIndex,
      addedAs: path,
      implicit: true,
    });
  }

  /** Removes `path` and its subtree (deepest first, so a directory's children go before it). */
  remove(path: string, how: HiddenContent['how']): void {
    for (const victim of [path, ...descendants(this.state, path)].reverse()) this.drop(victim, how);
  }

  /**
   * Removes what is under `dir` and not in `written`: an opaque marker, or a whiteout of a
   * directory this layer wrote.
   */
  prune(dir: string, written: LayerWrites): void {
    for (const victim of descendants(this.state, dir).reverse()) {
      if (!written.has(victim)) this.drop(victim, 'deleted');
    }
  }

  warn(): void {
    // Entries the rules do not apply (GNU sparse files, volume labels) carry nothing to model.
  }

  async write(path: string, entry: LayerEntry, body: EntryBody): Promise<boolean> {
    const common = {
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: Math.floor(entry.mtime.getTime() / 1000),
    };
    if (entry.type === 'file') {
      const content = await hashContent(body);
      this.contentBytes += content.size;
      this.put(path, {
        entry: { type: 'file', ...common, size: content.size, sha256: content.sha256 },
        blocks: content.blocks,
      });
      return true;
    }
    body.resume();
    const made: FsEntry =
      entry.type === 'symlink'
        ? { type: 'symlink', ...common, size: 0, linkTarget: entry.linkTarget }
        : entry.type === 'char' || entry.type === 'block'
          ? { type: entry.type, ...common, size: 0, devMajor: entry.devMajor, devMinor: entry.devMinor }
          : { type: entry.type, ...common, size: 0 };
    this.put(path, { entry: made, blocks: [] });
    return true;
  }

  /** A hard link points at its target's node, so the paths share one identity. */
  link(path: string, source: string): void {
    const target = this.state.nodes.get(source)!;
    this.touch(path);
    setNode(this.state, path, target);
    this.refs.set(target.id, (this.refs.get(target.id) ?? 0) + 1);
  }

  /** Remembers a path's node as it was before this layer touched it. */
  private touch(path: string): void {
    if (!this.before.has(path)) this.before.set(path, this.state.nodes.get(path) ?? null);
  }

  /** Takes one path out of the model, recording the content it was the last path to. */
  private drop(path: string, how: HiddenContent['how']): void {
    this.touch(path);
    this.release(path, how);
    removePath(this.state, path);
  }

  private release(path: string, how: HiddenContent['how']): void {
    const node = this.state.nodes.get(path);
    if (node === undefined || node.entry.type === 'dir') return;
    const left = (this.refs.get(node.id) ?? 1) - 1;
    if (left > 0) {
      this.refs.set(node.id, left);
      return;
    }
    this.refs.delete(node.id);
    if (node.entry.type === 'file') {
      this.hidden.push({
        path: node.addedAs,
        addedBy: node.layer,
        size: node.entry.size,
        ...(node.entry.sha256 !== undefined ? { sha256: node.entry.sha256 } : {}),
        how,
      });
    }
  }

  /** Sets a new node at `path`; what was there of another type the driver removed already. */
  private put(path: string, made: { entry: FsEntry; blocks: readonly string[] }): void {
    this.touch(path);
    const node: FsNode = {
      id: this.nextId++,
      entry: made.entry,
      blocks: made.blocks,
      layer: this.layerIndex,
      addedAs: path,
      implicit: false,
    };
    setNode(this.state, path, node);
    if (made.entry.type !== 'dir') this.refs.set(node.id, 1);
  }

  private summarize(
    descriptor: Descriptor,
    diffId: Digest,
    uncompressedSize: number,
    contentBytes: number,
    tarEntries: number,
    whiteouts: number,
  ): LayerChanges {
    const added: string[] = [];
    const changed: ChangedEntry[] = [];
    const deleted: string[] = [];
    const reemitted: { path: string; type: EntryType; mtimeChanged: boolean }[] = [];
    const changedNodes = new Map<number, string>();
    // Sorted, so the first path of a hard-link group is the one the others point to.
    const touched = [...this.before].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [path, old] of touched) {
      const now = this.state.nodes.get(path);
      if (old === null) {
        if (now !== undefined) added.push(path);
        continue;
      }
      if (now === undefined) {
        deleted.push(path);
        continue;
      }
      const fields = entryDifferences(old.entry, now.entry, true);
      const sameNode = old.id === now.id;
      if (fields.length === 0 || (fields.length === 1 && fields[0] === 'mtime')) {
        if (!sameNode || old.entry.type === 'dir')
          reemitted.push({ path, type: now.entry.type, mtimeChanged: fields.length === 1 });
        continue;
      }
      const contentChanged =
        old.entry.type === 'file' && now.entry.type === 'file' && old.entry.sha256 !== now.entry.sha256;
      const linkOf = now.entry.type === 'dir' ? undefined : changedNodes.get(now.id);
      if (linkOf === undefined) changedNodes.set(now.id, path);
      changed.push({
        ...(linkOf !== undefined ? { linkOf } : {}),
        path,
        fields,
        before: old.entry,
        after: now.entry,
        ...(contentChanged
          ? { changedBlocks: blockChanges(old.blocks, now.blocks), blocks: now.blocks.length }
          : {}),
      });
    }
    const byPath = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
    added.sort(byPath);
    deleted.sort(byPath);
    changed.sort((a, b) => byPath(a.path, b.path));
    reemitted.sort((a, b) => byPath(a.path, b.path));
    return {
      index: this.layerIndex,
      descriptor,
      diffId,
      compressedSize: descriptor.size,
      uncompressedSize,
      contentBytes,
      tarEntries,
      whiteouts,
      added,
      changed,
      deleted,
      reemitted,
      hidden: this.hidden,
    };
  }
}
