import { pipeline } from 'node:stream/promises';
import type { ImageSource } from '../../oci/image.js';
import { openLayerTar } from '../../oci/layer.js';
import type { Digest } from '../../oci/types.js';
import { applyLayer, type EntryBody, type LayerEntry, type LayerTarget } from '../../snapshot/apply-layer.js';
import type { LayerWrites } from '../../snapshot/layer-rules.js';
import type { Lookup } from '../../snapshot/resolve.js';
import { byteExactExtract } from '../../snapshot/tar-reader.js';

/**
 * Walks an image's layers in order through the one layer driver (snapshot/apply-layer.ts, so
 * whiteouts, opaque directories, hard links and symlinked parents follow Docker's rules) over a
 * small in-memory tree that keeps only what the scanners ask for: the bytes of the files a
 * scanner wants whole (package databases, manifests), and for executables what the Go build-info
 * finder pulled out of them while the tar streamed by. Every other file is a name in the tree,
 * nothing more, so an image of any size is scanned in bounded memory.
 *
 * What the scanners get: the final filesystem's wanted files with the layer that last wrote
 * each, and after every layer the wanted files it wrote (a package database rewritten by every
 * `apt-get install` tells, layer by layer, which layer added which package).
 */

/** What a scanner wants of a file, decided by its path and entry. */
export type Want = { readonly kind: 'content'; readonly limit: number } | { readonly kind: 'executable' };

export interface FileScanner {
  /** Whether (and how) to keep `path` (no leading slash). */
  want(path: string, mode: number, size: number | undefined): Want | undefined;
  /**
   * For `executable` wants: a reader fed the file's bytes as they stream by; `end()` returns what
   * is kept (or undefined). The bytes are never held whole.
   */
  readonly executable?: () => { push(chunk: Uint8Array): void; end(): unknown };
}

/** A kept file: its bytes (content wants) or what the executable reader made of it. */
export interface KeptFile {
  readonly path: string;
  /** Index of the layer (in the manifest) that last wrote the file. */
  readonly layer: number;
  readonly content?: Buffer;
  readonly extracted?: unknown;
}

type Node =
  | { readonly type: 'dir'; readonly children: Map<string, Node> }
  | { readonly type: 'symlink'; readonly target: string }
  | { readonly type: 'other'; kept?: KeptFile };

export interface LayerVisit {
  readonly index: number;
  readonly diffId: Digest;
  /** Wanted files this layer wrote, as they are after it. */
  readonly written: readonly KeptFile[];
}

class KeptTree implements LayerTarget {
  readonly root: Node & { type: 'dir' } = { type: 'dir', children: new Map() };
  layer = 0;
  written: KeptFile[] = [];

  constructor(private readonly scanner: FileScanner) {}

  private parentAndName(path: string): { parent: Map<string, Node> | undefined; name: string } {
    const parts = path.split('/');
    const name = parts.pop()!;
    let node: Node = this.root;
    for (const part of parts) {
      if (node.type !== 'dir') return { parent: undefined, name };
      const next: Node | undefined = node.children.get(part);
      if (next === undefined) return { parent: undefined, name };
      node = next;
    }
    return { parent: node.type === 'dir' ? node.children : undefined, name };
  }

  private node(path: string): Node | undefined {
    if (path === '') return this.root;
    const { parent, name } = this.parentAndName(path);
    return parent?.get(name);
  }

  lookup(path: string): Lookup {
    const node = this.node(path);
    if (node === undefined) return { kind: 'missing' };
    if (node.type === 'dir') return { kind: 'dir' };
    if (node.type === 'symlink') return { kind: 'symlink', target: node.target };
    return { kind: 'other' };
  }

  makeDir(path: string): void {
    const { parent, name } = this.parentAndName(path);
    parent?.set(name, { type: 'dir', children: new Map() });
  }

  remove(path: string): void {
    const { parent, name } = this.parentAndName(path);
    parent?.delete(name);
  }

  prune(dir: string, written: LayerWrites): void {
    const node = this.node(dir);
    if (node?.type !== 'dir') return;
    for (const name of [...node.children.keys()]) {
      const child = dir === '' ? name : `${dir}/${name}`;
      if (!written.has(child)) node.children.delete(name);
    }
  }

  async write(path: string, entry: LayerEntry, body: EntryBody, merge: boolean): Promise<boolean> {
    const { parent, name } = this.parentAndName(path);
    if (parent === undefined) {
      body.resume();
      return true;
    }
    if (entry.type === 'dir') {
      if (!merge) parent.set(name, { type: 'dir', children: new Map() });
      body.resume();
      return true;
    }
    if (entry.type === 'symlink') {
      parent.set(name, { type: 'symlink', target: entry.linkTarget });
      body.resume();
      return true;
    }
    const node: Node & { type: 'other' } = { type: 'other' };
    parent.set(name, node);
    const want = entry.type === 'file' ? this.scanner.want(path, entry.mode, entry.size) : undefined;
    if (want === undefined) {
      await drain(body);
      return true;
    }
    if (want.kind === 'content') {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of body) {
        if (size <= want.limit) chunks.push(Buffer.from(chunk));
        size += chunk.length;
      }
      // A file past its limit is not a database a scanner can trust: it is not kept.
      if (size <= want.limit) node.kept = { path, layer: this.layer, content: Buffer.concat(chunks) };
    } else {
      const reader = this.scanner.executable?.();
      for await (const chunk of body) reader?.push(chunk);
      const extracted = reader?.end();
      if (extracted !== undefined) node.kept = { path, layer: this.layer, extracted };
    }
    if (node.kept !== undefined) this.written.push(node.kept);
    return true;
  }

  link(path: string, source: string): void {
    const { parent, name } = this.parentAndName(path);
    const target = this.node(source);
    if (parent === undefined || target === undefined) return;
    // A hard link shares the bytes: the kept file answers under both names.
    const linked: Node =
      target.type === 'other' && target.kept !== undefined
        ? { type: 'other', kept: { ...target.kept, path } }
        : { type: 'other' };
    parent.set(name, linked);
  }

  warn(): void {
    // An entry type the layer rules skip changes nothing a package scanner reads.
  }

  /** Every kept file of the final tree, by path. */
  kept(): KeptFile[] {
    const out: KeptFile[] = [];
    const walk = (node: Node): void => {
      if (node.type === 'dir') for (const child of node.children.values()) walk(child);
      else if (node.type === 'other' && node.kept !== undefined) out.push(node.kept);
    };
    walk(this.root);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** The path a symlink chain ends at, inside the image (for /etc/os-release → ../usr/lib/os-release). */
  resolve(path: string): string | undefined {
    let current = path;
    for (let hops = 0; hops < 40; hops++) {
      const node = this.node(current);
      if (node?.type !== 'symlink') return node === undefined ? undefined : current;
      const base = current.split('/').slice(0, -1);
      const parts = node.target.startsWith('/') ? [] : base;
      for (const part of node.target.split('/')) {
        if (part === '' || part === '.') continue;
        if (part === '..') parts.pop();
        else parts.push(part);
      }
      current = parts.join('/');
    }
    return undefined;
  }

  keptAt(path: string): KeptFile | undefined {
    const node = this.node(path);
    return node?.type === 'other' ? node.kept : undefined;
  }
}

/** Reads an entry's body to its end (the tar moves on only then); returns its size. */
async function drain(body: EntryBody): Promise<number> {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.length;
  return bytes;
}

export interface ImageFiles {
  /** The wanted files of the final filesystem, sorted by path. */
  readonly files: readonly KeptFile[];
  /** The kept file `path` resolves to (symlinks followed inside the image), if any. */
  at(path: string): KeptFile | undefined;
}

/** Applies every layer of `image`; `onLayer` sees each layer's wanted writes as it finishes. */
export async function walkImage(
  image: ImageSource,
  scanner: FileScanner,
  onLayer: (visit: LayerVisit) => void,
  signal?: AbortSignal,
): Promise<ImageFiles> {
  const tree = new KeptTree(scanner);
  const layers = image.manifest.value.layers;
  for (const [index, descriptor] of layers.entries()) {
    const diffId = image.config.value.rootfs.diff_ids[index]!;
    tree.layer = index;
    tree.written = [];
    const stream = await openLayerTar(image, descriptor, { diffId, ...(signal ? { signal } : {}) });
    const extract = byteExactExtract();
    const feeding = pipeline(stream, extract);
    feeding.catch(() => undefined);
    await applyLayer(extract, tree, {
      layerName: `${image.name}: layer ${index + 1} (${descriptor.digest})`,
      ...(signal ? { signal } : {}),
    });
    await feeding;
    onLayer({ index, diffId, written: tree.written });
  }
  return {
    files: tree.kept(),
    at: (path) => {
      const resolved = tree.resolve(path);
      return resolved === undefined ? undefined : tree.keptAt(resolved);
    },
  };
}
