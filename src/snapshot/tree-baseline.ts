import { StratumError } from '../errors.js';
import { diffSnapshots } from './diff.js';
import { scanTree } from './scan.js';
import type { LayerDiff, ScanOptions, TreeBaseline, TreeSnapshot } from './types.js';

/**
 * lstat every path before and after a step and compare: what the scan snapshotter diffs with.
 * Works on any filesystem and needs no privileges.
 */
export function createTreeBaseline(
  root: string,
  options: { readonly exclude?: (relPath: string) => boolean } = {},
): TreeBaseline & { readonly baseline: () => TreeSnapshot | undefined } {
  let before: TreeSnapshot | undefined;
  const scanOptions = (signal?: AbortSignal): ScanOptions => ({
    ...(options.exclude ? { exclude: options.exclude } : {}),
    ...(signal ? { signal } : {}),
  });
  return {
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
