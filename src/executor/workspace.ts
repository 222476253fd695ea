import { rmSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoCode } from '../errors.js';
import { makeDirectories } from '../oci/directories.js';
import { isAbandoned, ownedName } from '../oci/owner.js';

const PREFIX = 'stratum-build-';

/**
 * The temporary directories of one build (rootfs per stage, RUN scratch files, downloads).
 * Everything lives under one directory, named after the build's PID (see oci/owner.ts), so
 * that a failed or interrupted build removes it all in one call, and what a killed build left
 * is recognised and removed by the next build or `cache prune` (removeAbandoned).
 */
export class Workspace {
  private constructor(readonly root: string) {}

  static async create(parent: string): Promise<Workspace> {
    await makeDirectories(parent);
    const workspace = new Workspace(await mkdtemp(join(parent, ownedName(PREFIX, ''))));
    live.add(workspace.root);
    return workspace;
  }

  /**
   * Removes the workspaces in `parent` whose build no longer runs; returns how many. Removal
   * failures are ignored: another build may be removing the same leftover at the same time.
   */
  static async removeAbandoned(parent: string): Promise<number> {
    let names: string[];
    try {
      names = await readdir(parent);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return 0;
      throw error;
    }
    let removed = 0;
    for (const name of names) {
      if (!isAbandoned(name, PREFIX)) continue;
      await rm(join(parent, name), { recursive: true, force: true, maxRetries: 3 }).then(
        () => removed++,
        () => undefined,
      );
    }
    return removed;
  }

  /** A fresh directory for `purpose` (its name is only for people looking at the disk). */
  async dir(purpose: string): Promise<string> {
    return mkdtemp(join(this.root, `${purpose.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 40)}-`));
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
