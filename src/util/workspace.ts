import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { makeOwnedTempDir, removeAbandonedTemporaries } from './temp-dir.js';

/**
 * The temporary directories of one build (rootfs per stage, RUN scratch files, downloads).
 * Everything lives under one directory, named after the build's PID (see oci/owner.ts), so
 * that a failed or interrupted build removes it all in one call, and what a killed build left
 * is recognised and removed by the next build or `cache prune` (removeAbandoned).
 */
export class Workspace {
  private constructor(readonly root: string) {}

  static async create(parent: string): Promise<Workspace> {
    const workspace = new Workspace(await makeOwnedTempDir('stratum-build-', parent));
    live.add(workspace.root);
    return workspace;
  }

  /**
   * Removes the workspaces in `parent` whose build no longer runs, and the other owned temporary
   * directories (inflated archives, `docker save` staging) whose process is gone; returns how
   * many. See oci/temp-dir.ts.
   */
  static removeAbandoned(
    parent: string,
    options: { readonly beforeRemove?: (path: string) => Promise<void> } = {},
  ): Promise<number> {
    return removeAbandonedTemporaries(parent, options);
  }

  /** A fresh directory for `purpose` (its name is only for people looking at the disk). */
  async dir(purpose: string): Promise<string> {
    // Synchronous: a RUN's scratch directory is made on the step's path, where a thread-pool
    // round trip costs more than the mkdir (0.3-1 ms on a small VM).
    return Promise.resolve(
      mkdtempSync(join(this.root, `${purpose.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 40)}-`)),
    );
  }

  /** A fresh path in the workspace that does not exist yet (for a directory moved in). */
  newPath(purpose: string): string {
    return join(
      this.root,
      `${purpose.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 40)}-${randomBytes(6).toString('hex')}`,
    );
  }

  async dispose(): Promise<void> {
    await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
    live.delete(this.root);
  }
}

/**
 * Workspaces of builds still running in this process. If the process exits without unwinding
 * (the CLI's signal watchdog calls process.exit), they are removed on the way out.
 */
const live = new Set<string>();
process.on('exit', () => {
  for (const root of live) rmSync(root, { recursive: true, force: true });
});
