import { createHash } from 'node:crypto';
import { availableParallelism, homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { StratumError, wrap } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { ImageSource } from '../oci/image.js';
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatches,
} from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { BuildArgUsage, platformArgs } from './args.js';
import type { BuildContext, ExplainStep, StageResult } from './build-context.js';
import { cacheKey, chainId } from './cache/key.js';
import { LayerCache } from './cache/store.js';
import type { SharedCaches } from './cache/registry-shared.js';
import { StatCache, loadDockerignore } from './context/index.js';
import { finalizeImage } from './finalize.js';
import { scratchState, type ImageState } from './image-state.js';
import { planBuild, stageNames } from './plan.js';
import type { ProgressListener } from './progress.js';
import { importLayers } from './rootfs.js';
import { StageRunner } from './stage.js';
import { Workspace } from './workspace.js';
import { UnpackedRootfsCache } from './unpacked.js';

export interface BuildOptions {
  readonly contextDir: string;
  /** Path of the Dockerfile (for .dockerignore lookup, messages and --explain history). */
  readonly dockerfilePath?: string;
  /** The Dockerfile's bytes (read by the caller; `-f -` reads them from standard input). */
  readonly dockerfile: string | Uint8Array;
  readonly buildArgs?: Readonly<Record<string, string>>;
  readonly target?: string;
  readonly platform?: string;
  readonly network?: 'host' | 'none';
  readonly noCache?: boolean;
  readonly noCacheFilter?: readonly string[];
  /** Secret id → host file. */
  readonly secrets?: Readonly<Record<string, string>>;
  /** Cache entries (and, when given, their blobs); default: the user's cache directory. */
  readonly cacheDir?: string;
  /** The blob store layers are written to; default: one inside the cache directory. */
  readonly blobs?: BlobStore;
  readonly explain?: boolean;
  readonly sourceDateEpoch?: number;
  readonly onEvent?: ProgressListener;
  readonly signal?: AbortSignal;
  /** Registry caches to read from after a local miss and to record every step for. */
  readonly sharedCache?: SharedCaches;
  /** Opens a FROM / --from image that is not a stage. */
  readonly resolveImage: (reference: string, signal?: AbortSignal) => Promise<ImageSource>;
  /**
   * Where rootfs directories are made; default `$STRATUM_TMPDIR`, else `tmp/` in the cache
   * directory: on the same filesystem as the blobs, and where `cache prune` finds what a
   * killed build left behind.
   */
  readonly tmpDir?: string;
}

export interface BuildResult {
  /** The built image, readable from the blob store (write it anywhere with writeImage). */
  readonly image: ImageSource;
  readonly warnings: readonly string[];
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['STRATUM_CACHE_DIR']) return env['STRATUM_CACHE_DIR'];
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'stratum');
  return join(homedir(), '.cache', 'stratum');
}

/**
 * Builds the target stage of a Dockerfile. Only the stages it needs run, in dependency order;
 * the result's layers and config are in the blob store. A failed or aborted build leaves no
 * temporary directory behind and writes no image.
 */
export async function build(options: BuildOptions): Promise<BuildResult> {
  const signal = options.signal;
  const warnings: string[] = [];
  const emit: ProgressListener = (event) => {
    if (event.kind === 'warning') warnings.push(event.message);
    options.onEvent?.(event);
  };
  const file = options.dockerfilePath ?? 'Dockerfile';
  const platform = choosePlatform(options.platform);
  const buildArgs = new BuildArgUsage(new Map(Object.entries(options.buildArgs ?? {})));
  const plan = planBuild(
    options.dockerfile,
    file,
    buildArgs,
    platformArgs(platform, hostPlatform()),
    options.target,
  );

  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const cache = new LayerCache(cacheDir, options.blobs);
  const blobs = cache.blobs;
  const ignore = await loadDockerignore(options.contextDir, options.dockerfilePath);
  const statCache = await StatCache.open(cache.statCachePath);
  const explainId = createHash('sha256')
    .update(
      `${options.dockerfilePath === undefined ? '<stdin>' : resolve(options.dockerfilePath)}\0${options.target ?? ''}`,
    )
    .digest('hex');
  const previous = await cache.readExplain(explainId);
  const current = new Map<string, ExplainStep>();
  const noCacheFilter = new Set((options.noCacheFilter ?? []).map((name) => name.toLowerCase()));
  const created =
    options.sourceDateEpoch === undefined
      ? new Date().toISOString()
      : new Date(options.sourceDateEpoch * 1000).toISOString();

  const workspaceParent = options.tmpDir ?? process.env['STRATUM_TMPDIR'] ?? join(cacheDir, 'tmp');
  // What killed builds left behind goes first: their workspaces and partial blobs.
  await Workspace.removeAbandoned(workspaceParent);
  await blobs.removeAbandonedTemporaries();
  const workspace = await Workspace.create(workspaceParent);
  const stageController = new AbortController();
  const stageSignal =
    signal === undefined ? stageController.signal : AbortSignal.any([signal, stageController.signal]);
  try {
    const stages = new Map<number, StageResult>();
    const context: BuildContext = {
      file,
      escapeChar: plan.parsed.escapeChar,
      contextDir: resolve(options.contextDir),
      ignore: ignore.matcher,
      buildArgs,
      metaArgs: plan.metaArgs,
      platform,
      network: options.network ?? 'host',
      secrets: new Map(Object.entries(options.secrets ?? {})),
      cache,
      shared: options.sharedCache?.active === true ? options.sharedCache : undefined,
      ignoreCache: (stage) => options.noCache === true || noCacheFilter.has(stage.toLowerCase()),
      blobs,
      workspace,
      statCache,
      emit,
      explain: options.explain === true,
      previous,
      current,
      signal: stageSignal,
      created,
      sourceDateEpoch: options.sourceDateEpoch,
      resolveImage: options.resolveImage,
      stages,
      stageNames: stageNames(plan),
      cacheMountsDir: join(cacheDir, 'mounts'),
      unpacked: new UnpackedRootfsCache(join(cacheDir, 'rootfs')),
    };

    const runStage = async (index: number): Promise<void> => {
      stageSignal.throwIfAborted();
      const planned = plan.stages[index]!;
      if (planned.platform !== undefined)
        checkPlatform(planned.platform, platform, `${file}:${planned.stage.from.location.line}`);
      emit({ kind: 'stage-start', stage: planned.label, base: planned.baseText });
      let base: ImageState;
      let baseKey;
      let triggers: readonly string[] = [];
      let baseCreated: string | undefined;
      switch (planned.base.kind) {
        case 'scratch':
          base = scratchState(platform);
          baseKey = cacheKey([{ name: 'base', value: `scratch ${chainId([])}` }]).digest;
          break;
        case 'stage': {
          const parent = stages.get(planned.base.index);
          if (parent === undefined)
            throw new StratumError('BUILD_FAILED', `${file}: stage ${planned.baseText} was not built`);
          base = parent.state;
          baseKey = parent.finalKey;
          baseCreated = parent.created;
          triggers = parent.state.config.OnBuild ?? [];
          break;
        }
        case 'image': {
          const image = await openBase(
            options,
            planned.base.reference,
            file,
            planned.stage.from.location.line,
            stageSignal,
          );
          try {
            base = await imageState(image, blobs, stageSignal);
            baseCreated = image.config.value.created;
          } finally {
            await image.close();
          }
          baseKey = cacheKey([
            { name: 'base', value: chainId(base.layers.map((layer) => layer.diffId)) },
          ]).digest;
          triggers = base.config.OnBuild ?? [];
          break;
        }
      }
      const runner = new StageRunner(context, {
        stage: planned.stage,
        label: planned.label,
        base,
        baseKey,
        triggers,
        baseCreated,
      });
      stages.set(index, await runner.run());
    };

    // Stages whose dependencies are built run side by side (as BuildKit does), one per core.
    // The first failure aborts the others and is the one reported.
    const pending = new Set(plan.order);
    const running = new Map<number, Promise<void>>();
    const parallel = Math.max(1, Math.min(availableParallelism(), 4));
    while (pending.size > 0 || running.size > 0) {
      for (const index of plan.order) {
        if (running.size >= parallel) break;
        const ready = (plan.dependencies.get(index) ?? []).every((dependency) => stages.has(dependency));
        if (!pending.has(index) || !ready) continue;
        pending.delete(index);
        running.set(
          index,
          runStage(index).finally(() => running.delete(index)),
        );
      }
      if (running.size === 0)
        throw new StratumError('BUILD_FAILED', `${file}: stage dependencies cannot be satisfied`);
      try {
        await Promise.race(running.values());
      } catch (error) {
        stageController.abort(error);
        await Promise.allSettled(running.values());
        throw error;
      }
    }

    for (const name of buildArgs.unused()) {
      emit({
        kind: 'warning',
        message: `build arg ${name} was given but not consumed by any ARG in ${file}`,
      });
    }
    const target = stages.get(plan.target)!;
    const image = await finalizeImage(
      target.state,
      blobs,
      `${file} (${target.label})`,
      target.created ?? created,
    );
    await cache.writeExplain(explainId, {
      steps: Object.fromEntries([...current.entries()].map(([id, step]) => [id, step])),
    });
    await statCache.save();
    // Only a successful build's filesystems are whole: a failed step may have left one half done.
    for (const result of stages.values()) await result.keepRootfs();
    return { image, warnings };
  } finally {
    await workspace.dispose();
  }
}

async function openBase(
  options: BuildOptions,
  reference: string,
  file: string,
  line: number,
  signal: AbortSignal | undefined,
): Promise<ImageSource> {
  try {
    return await options.resolveImage(reference, signal);
  } catch (error) {
    // A reference the Dockerfile names is the Dockerfile's error (exit 1), not a usage error.
    throw wrap(error, `${file}:${line}: FROM ${reference}`, {
      location: { file, line },
      ...(error instanceof StratumError && error.code === 'USAGE' ? { code: 'BUILD_FAILED' as const } : {}),
    });
  }
}

/** The state a stage starts from when its base is an image: its layers copied into our store. */
async function imageState(
  image: ImageSource,
  blobs: BlobStore,
  signal: AbortSignal | undefined,
): Promise<ImageState> {
  const config = image.config.value;
  const layers = await importLayers(image, blobs, signal);
  return {
    platform: {
      architecture: config.architecture,
      os: config.os,
      ...(config.variant === undefined ? {} : { variant: config.variant }),
    },
    config: config.config ?? {},
    ...(config.author === undefined ? {} : { author: config.author }),
    layers,
    history: config.history ?? [],
  };
}

function choosePlatform(requested: string | undefined): Platform {
  const host = hostPlatform();
  if (requested === undefined) return host;
  checkPlatform(requested, host, '--platform');
  return host;
}

/** stratum runs steps natively, so it builds for the host's platform only. */
function checkPlatform(requested: string, host: Platform, where: string): void {
  const wanted = normalizePlatform(parsePlatform(requested));
  if (!platformMatches(wanted, host)) {
    throw new StratumError(
      'UNSUPPORTED',
      `${where}: platform ${formatPlatform(wanted)} differs from this machine's ${formatPlatform(host)}; stratum builds for the host platform only (no emulation)`,
    );
  }
}
