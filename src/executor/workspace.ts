import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * The temporary directories of one build (rootfs per stage, scratch files). Everything lives
 * under one directory so that a failed or interrupted build removes it all in one call.
 */
export class Workspace {
  private constructor(readonly root: string) {}

  static async create(parent: string): Promise<Workspace> {
    return new Workspace(await mkdtemp(join(parent, 'stratum-build-')));
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
  }
}
