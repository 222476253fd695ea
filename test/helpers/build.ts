import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildImage, type BuildImageOptions, type BuildImageResult } from '../../src/build/build-image.js';
import type { BuildEvent } from '../../src/executor/progress.js';
import type { ImageSource } from '../../src/oci/image.js';
import { openImage } from '../../src/transport/images.js';
import { makeBusyboxRootfs, writeBaseImage, type BaseImageFiles } from './base-image.js';

/** A scratch area for build tests: its own data dir, cache dir and busybox base image. */
export interface BuildSandbox {
  readonly dir: string;
  readonly dataDir: string;
  readonly cacheDir: string;
  readonly base: BaseImageFiles;
  /** `FROM` text for the busybox base. */
  readonly baseRef: string;
  context(name: string, files: Readonly<Record<string, string>>): string;
  build(
    contextDir: string,
    options?: Partial<BuildImageOptions>,
  ): Promise<BuildImageResult & { events: BuildEvent[] }>;
  open(ref: string): Promise<ImageSource>;
  cleanup(): void;
}

export function buildSandbox(): BuildSandbox {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-test-'));
  const rootfs = join(dir, 'base-rootfs');
  mkdirSync(rootfs);
  makeBusyboxRootfs(rootfs);
  const base = writeBaseImage(rootfs, join(dir, 'base'), 'stratum-test/busybox:1');
  const dataDir = join(dir, 'data');
  const cacheDir = join(dir, 'cache');
  let contexts = 0;
  return {
    dir,
    dataDir,
    cacheDir,
    base,
    baseRef: `oci:${base.layout}:1`,
    context(name, files) {
      const contextDir = join(dir, `ctx-${contexts++}-${name}`);
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(contextDir, path)), { recursive: true });
        writeFileSync(join(contextDir, path), content);
      }
      mkdirSync(contextDir, { recursive: true });
      return contextDir;
    },
    async build(contextDir, options = {}) {
      const events: BuildEvent[] = [];
      const { readFileSync } = await import('node:fs');
      const dockerfilePath = options.dockerfilePath ?? join(contextDir, 'Dockerfile');
      const result = await buildImage({
        contextDir,
        dockerfilePath,
        dockerfile: options.dockerfile ?? readFileSync(dockerfilePath),
        dataDir,
        cacheDir,
        network: 'none',
        ...options,
        onEvent: (event) => {
          events.push(event);
          options.onEvent?.(event);
        },
      });
      return { ...result, events };
    },
    open: (ref) => openImage(ref, { dataDir }),
    cleanup() {
      if (process.env['STRATUM_KEEP_TEST_DIRS'] === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
