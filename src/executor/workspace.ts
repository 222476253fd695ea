import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';

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

  async dispose(): Promise<void> {
    await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
  }
}
