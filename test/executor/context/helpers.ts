import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach } from 'vitest';

/** A tree to build in a test: file content (string), { mode, content }, a symlink, or a dir. */
export type Node =
  | string
  | { readonly content: string; readonly mode?: number; readonly mtime?: number }
  | { readonly symlink: string }
  | { readonly dir: true; readonly mode?: number };

export async function build(root: string, tree: Readonly<Record<string, Node>>): Promise<void> {
  for (const [rel, node] of Object.entries(tree)) {
    const path = join(root, rel);
    await mkdir(dirname(path), { recursive: true });
    if (typeof node === 'string') {
      await writeFile(path, node);
    } else if ('symlink' in node) {
      await symlink(node.symlink, path);
    } else if ('dir' in node) {
      await mkdir(path, { recursive: true });
      if (node.mode !== undefined) await chmod(path, node.mode);
    } else {
      await writeFile(path, node.content);
      if (node.mode !== undefined) await chmod(path, node.mode);
      if (node.mtime !== undefined) await utimes(path, node.mtime, node.mtime);
    }
  }
}

const made: string[] = [];

/** A temp dir removed after the test. */
export async function tempDir(prefix = 'stratum-ctx-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

afterEach(async () => {
  while (made.length > 0) await rm(made.pop()!, { recursive: true, force: true });
});

/** Builds a tar archive in memory from headers (and file contents), hostile ones included. */
export async function makeTar(
  entries: readonly {
    name: string;
    type?: 'file' | 'directory' | 'symlink' | 'link';
    content?: string;
    linkname?: string;
    mode?: number;
    uid?: number;
    gid?: number;
    mtime?: Date;
  }[],
): Promise<Buffer> {
  const { pack } = await import('tar-stream');
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    p.on('end', () => {
      resolve();
    });
    p.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? new Date(1_600_000_000_000),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      p.entry(header, type === 'file' ? (e.content ?? '') : '', (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
