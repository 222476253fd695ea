import { StratumError } from '../errors.js';
import { diffSnapshots } from './diff.js';
import { scanTree } from './scan.js';
import type { LayerDiff, ScanOptions, Snapshotter, TreeSnapshot } from './types.js';

/**
 * The scanning snapshotter: lstat every path before and after a step and compare. Works on any
 * filesystem and needs no privileges; an overlayfs snapshotter (read the upper directory) can
 * implement the same interface later.
 */
export function createScanSnapshotter(
  root: string,
  options: { readonly exclude?: (relPath: string) => boolean } = {},
): Snapshotter & { readonly baseline: () => TreeSnapshot | undefined } {
  let before: TreeSnapshot | undefined;
  const scanOptions = (signal?: AbortSignal): ScanOptions => ({
    ...(options.exclude ? { exclude: options.exclude } : {}),
    ...(signal ? { signal } : {}),
  });
  return {
    kind: 'scan',
    baseline: () => before,
    async prepare(signal?: AbortSignal): Promise<void> {
      before = await scanTree(root, scanOptions(signal));
    },
    async commit(signal?: AbortSignal): Promise<LayerDiff> {
      if (before === undefined) {
        throw new StratumError('IO', `snapshot of ${root}: commit() called before prepare()`);
      }
      const after = await scanTree(root, scanOptions(signal));
      const diff = await diffSnapshots(before, after, root, signal ? { signal } : {});
      before = after;
      return diff;
    },
  };
}
