// The build's entry point. Over ~400 lines because it is the one place that wires a build
// together (options, cache dir, workspace, the stage scheduler, explain records, kept
// filesystems); each part it calls lives in its own module (plan, platforms, stage, finalize).
import { trace } from '../util/trace.js';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { StratumError, wrap } from '../errors.js';
import type { BlobStore } from '../oci/blob-store.js';
import { DEFAULT_COMPRESSION, requireCompression, type CompressionSpec } from '../oci/compression.js';
import type { AnyImage, ImageIndexSource, ImageSource } from '../oci/image.js';
import { formatPlatform, hostPlatform } from '../oci/platform.js';
import type { Digest, Platform } from '../oci/types.js';
import { BuildArgUsage, platformArgs } from './args.js';
import type { BuildSession, ExplainStep, SecretMaterial, StageResult } from './build-session.js';
import { cacheKey } from '../cache/key.js';
import { layeredCache, type RemoteCache } from '../cache/source.js';
import type { RecordedBase } from '../cache/step-record.js';
import { CacheMountTransfer } from './cache-mount-transfer.js';
import { LayerCache } from '../cache/store.js';
import { chainId } from '../oci/digest.js';
import { Limiter } from '../util/limit.js';
import { StatCache, loadDockerignore } from './context/index.js';
import { finalizeImage, finalizeIndex } from './finalize.js';
import { scratchState, type ImageState } from './image-state.js';
import { planBuild, stageNames, type PlannedStage } from './plan.js';
import {
  baseMismatchWarning,
  sharedStages,
  stageLabel,
  stageNameOfLabel,
  stagePlatform,
  targetPlatforms,
} from './platforms.js';
import type { ProgressListener } from './progress.js';
import { importLayers } from './import-layers.js';
import { ensureEmulation } from './sandbox/binfmt.js';
import {
  chooseIsolation,
  warmRunSandbox,
  holdPrivateNetworks,
  holdSpareInits,
  holdSpareInitsForBuild,
  type IsolationChoice,
  type IsolationRequest,
  type Ulimit,
} from './sandbox/index.js';
import { StageRunner } from './stage.js';
import { Workspace } from '../util/workspace.js';
import { sweepDue } from '../util/temp-dir.js';
import { UnpackedRootfsCache } from '../snapshot/kept-rootfs.js';
import { LazySnapshotter, parseSnapshotterRequest, type SnapshotterRequest } from '../snapshot/choose.js';
import { defaultCacheDir } from '../util/cache-dir.js';
import type { RebuildSession } from './rebuild-session.js';

export interface BuildOptions {
  readonly contextDir: string;
  /** Path of the Dockerfile (for .dockerignore lookup, messages and --explain history). */
  readonly dockerfilePath?: string;
  /** The Dockerfile's bytes (read by the caller; `-f -` reads them from standard input). */
  readonly dockerfile: string | Uint8Array;
  readonly buildArgs?: Readonly<Record<string, string>>;
  readonly target?: string;
  /** Target platform, or several separated by commas (`linux/amd64,linux/arm64`): one image per platform, in an index. */
  readonly platform?: string;
  /** Default: `default`, a private network namespace per RUN with outbound access (as Docker). */
  readonly network?: 'host' | 'none' | 'default';
  readonly noCache?: boolean;
  readonly noCacheFilter?: readonly string[];
  /** Secret id → host file. */
  readonly secrets?: Readonly<Record<string, SecretMaterial>>;
  /** SSH agent id → host socket, for `RUN --mount=type=ssh` (`--ssh`). */
  readonly ssh?: Readonly<Record<string, string>>;
  /** RUN's isolation (`--isolation`): `auto` takes the strongest this environment allows. */
  readonly isolation?: IsolationRequest;
  /** Entitlements granted with `--allow`: a Dockerfile's `RUN --network=host` and `RUN --security=insecure` need them. */
  readonly allow?: readonly ('network.host' | 'security.insecure')[];
  /** Extra /etc/hosts lines for RUN (`--add-host`). */
  readonly extraHosts?: readonly { readonly host: string; readonly ip: string }[];
  /** RUN's /dev/shm size in bytes (`--shm-size`; default 64 MiB). */
  readonly shmSize?: number;
  /** Resource limits for RUN (`--ulimit`). */
  readonly ulimits?: readonly Ulimit[];
  /** Cache entries (and, when given, their blobs); default: the user's cache directory. */
  readonly cacheDir?: string;
  /** The blob store layers are written to; default: one inside the cache directory. */
  readonly blobs?: BlobStore;
  readonly explain?: boolean;
  readonly sourceDateEpoch?: number;
  /** Layer compression; default gzip level 6. */
  readonly compression?: CompressionSpec;
  readonly onEvent?: ProgressListener;
  readonly signal?: AbortSignal;
  /** Registry caches to read from after a local miss and to record every step for. */
  readonly sharedCache?: RemoteCache;
  /** Opens a FROM / --from image that is not a stage, choosing `platform` from an index. */
  readonly resolveImage: (
    reference: string,
    signal?: AbortSignal,
    platform?: Platform,
  ) => Promise<ImageSource>;
  /**
   * Where rootfs directories are made; default `$STRATUM_TMPDIR`, else `tmp/` in the cache
   * directory: on the same filesystem as the blobs, and where `cache prune` finds what a
   * killed build left behind.
   */
  readonly tmpDir?: string;
  /** overlay, scan, or auto (default: overlay where it can be mounted, else scan). */
  readonly snapshotter?: SnapshotterRequest;
  /** What builds of one process keep between them (`build --watch`; see rebuild-session.ts). */
  readonly rebuildSession?: RebuildSession;
  /**
   * Takes a successful build's cleanup (unmounting and removing its filesystems, ending its
   * helper processes) instead of waiting for it: the caller writes the outputs meanwhile and
   * must await it. Without it the build returns once everything is cleaned up. A failed build
   * always cleans up before it throws.
   */
  readonly cleanupLater?: (cleanup: Promise<void>) => void;
  /**
   * Called before the build's first read of its context directory; resolves when it may read
   * (`build --watch`: at once, or once a burst of changes is over; see src/watch/). The
   * Dockerfile, planning, base images and steps that need no context file go ahead meanwhile.
   * Default: at once.
   */
  readonly contextReady?: () => Promise<unknown>;
}

export interface BuildResult {
  /**
   * The built image, readable from the blob store (write it anywhere with writeImage). When
   * several platforms were asked for, the first platform's image: write `index` instead.
   */
  readonly image: ImageSource;
  /** With several platforms: the image index holding one image per platform (see builtImage). */
  readonly index?: ImageIndexSource;
  readonly warnings: readonly string[];
}

/** What a build made, to write: its image index when it built several platforms, else its image. */
export function builtImage(result: BuildResult): AnyImage {
  return result.index ?? result.image;
}

/**
 * Builds the target stage of a Dockerfile. Only the stages it needs run, in dependency order;
 * the result's layers and config are in the blob store. A failed or aborted build leaves no
 * temporary directory behind and writes no image.
 */
export async function executeBuild(options: BuildOptions): Promise<BuildResult> {
  const signal = options.signal;
  const warnings: string[] = [];
  const emit: ProgressListener = (event) => {
    if (event.kind === 'warning') warnings.push(event.message);
    options.onEvent?.(event);
  };
  const file = options.dockerfilePath ?? 'Dockerfile';
  const compression = options.compression ?? DEFAULT_COMPRESSION;
  requireCompression(compression, '--compression zstd');
  const host = hostPlatform();
  const targets = targetPlatforms(options.platform);
  const multi = targets.length > 1;
  const buildArgs = new BuildArgUsage(new Map(Object.entries(options.buildArgs ?? {})));
  // One plan per target: the automatic TARGET* args differ, and with them FROM lines may.
  const plans = targets.map((target) =>
    planBuild(options.dockerfile, file, buildArgs, platformArgs(target, host), options.target),
  );
  const shared = sharedStages(plans, targets, file);

  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const cache = new LayerCache(cacheDir, options.blobs);
  const blobs = cache.blobs;
  const ignore = await loadDockerignore(options.contextDir, options.dockerfilePath);
  const rebuilds = options.rebuildSession;
  const statCache = await (rebuilds?.statCache(cache.statCachePath) ?? StatCache.open(cache.statCachePath));
  const explainId = createHash('sha256')
    .update(
      `${options.dockerfilePath === undefined ? '<stdin>' : resolve(options.dockerfilePath)}\0${options.target ?? ''}`,
    )
    .digest('hex');
  const previous = await (rebuilds?.readExplain(cache, explainId) ?? cache.readExplain(explainId));
  const current = new Map<string, ExplainStep>();
  const noCacheFilter = new Set((options.noCacheFilter ?? []).map((name) => name.toLowerCase()));
  const created =
    options.sourceDateEpoch === undefined
      ? new Date().toISOString()
      : new Date(options.sourceDateEpoch * 1000).toISOString();

  trace('build: planned, cache records read');
  const workspaceParent = options.tmpDir ?? cache.layout.tmp;
  // What killed builds left behind goes first: their workspaces. Their partial blobs are never
  // read (a blob has its digest's name only once whole), so they are looked for beside the
  // build, not before it (a listing of every blob, ~8 ms of a build's start when due), and the
  // cleanup waits for that. The stamp lives beside the store's leases (tmp/ holds nothing
  // between builds).
  await Workspace.removeAbandoned(workspaceParent);
  const sweepingBlobs =
    blobs.leaseDir === undefined || sweepDue(join(blobs.leaseDir, '.temporaries-swept'))
      ? blobs.removeAbandonedTemporaries().catch(() => 0)
      : undefined;
  const workspace = await Workspace.create(workspaceParent);
  trace('build: workspace ready');
  const releaseNetworks = holdPrivateNetworks();
  // A RUN's init is started ahead of it (sandbox/spare-init.ts) while a build runs; a --watch
  // session keeps one waiting between its builds too.
  const runCount = plans
    .flatMap((plan) => plan.stages)
    .flatMap((planned) => planned.stage.instructions)
    .filter(
      (instruction) =>
        instruction.kind === 'run' || (instruction.kind === 'onbuild' && instruction.trigger.kind === 'run'),
    ).length;
  const hasRun = runCount > 0;
  const spareInits = holdSpareInitsForBuild(runCount);
  if (rebuilds !== undefined) void rebuilds.keep('spare-inits', () => Promise.resolve(spareInitsHold()));
  // Chosen at the first RUN (a build without one probes nothing) and said once, as the snapshotter is.
  let isolationChoice: Promise<IsolationChoice> | undefined;
  const isolation = (): Promise<IsolationChoice> =>
    (isolationChoice ??= chooseIsolation(options.isolation ?? isolationFromEnvironment()).then((choice) => {
      emit({ kind: 'isolation', mode: choice.mode, reason: choice.reason });
      return choice;
    }));
  const stageController = new AbortController();
  const stageSignal =
    signal === undefined ? stageController.signal : AbortSignal.any([signal, stageController.signal]);
  const snapshotter = new LazySnapshotter(
    {
      cacheDir,
      workspace,
      blobs,
      requested: options.snapshotter ?? snapshotterFromEnvironment(),
      kept: new UnpackedRootfsCache(cache.layout.keptRootfs),
      adoptUppers: options.sourceDateEpoch === undefined,
      ...(rebuilds === undefined ? {} : { rebuildSession: rebuilds }),
    },
    (choice) => {
      emit({ kind: 'snapshotter', name: choice.name, reason: choice.reason });
      // The first step that runs: RUN's isolation probe (a process) and seccomp filter are made
      // now, beside that step, rather than in front of the first RUN (which still says them).
      if (hasRun) warmRunSandbox();
    },
  );
  const layered = layeredCache(cache, options.sharedCache?.active === true ? options.sharedCache : undefined);
  const cacheMountTransfer = new CacheMountTransfer(cache.layout.mounts, layered, blobs, emit, compression);
  const explainPlace = {
    dockerfile: dockerfilePlace(options.contextDir, options.dockerfilePath),
    target: options.target ?? '',
  };
  const stageBases = new Map<string, RecordedBase>();
  const nodes = new Map<string, Promise<StageResult>>();
  let succeeded = false;
  let recordsForNextBuild: (() => Promise<void>) | undefined;
  try {
    // One session per target platform; they share the cache, workspace and explain record.
    const contexts: BuildSession[] = targets.map((platform, p) => ({
      file,
      escapeChar: plans[p]!.parsed.escapeChar,
      contextDir: resolve(options.contextDir),
      contextReady: onceReady(options.contextReady),
      ignore: ignore.matcher,
      buildArgs,
      metaArgs: plans[p]!.metaArgs,
      platform,
      network: options.network ?? 'default',
      secrets: new Map(Object.entries(options.secrets ?? {})),
      ssh: new Map(Object.entries(options.ssh ?? {})),
      allow: options.allow ?? [],
      isolation,
      runStarting: spareInits.runStarting,
      extraHosts: options.extraHosts ?? [],
      shmSize: options.shmSize,
      ulimits: options.ulimits ?? [],
      cache: layered,
      ignoreCache: (stage) =>
        options.noCache === true || noCacheFilter.has(stageNameOfLabel(stage).toLowerCase()),
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
      compression,
      resolveImage: (reference, imageSignal) => options.resolveImage(reference, imageSignal, platform),
      stages: new Map<number, StageResult>(),
      stageNames: stageNames(plans[p]!),
      cacheMountsDir: cache.layout.mounts,
      cacheMountTransfer,
      explainPlace,
      stageBases,
      snapshotter,
    }));

    // Each base image is opened once per build, however many stages start from it.
    const openedBases = new Map<string, Promise<OpenedBase>>();
    const openBaseOnce = (reference: string, line: number, platform: Platform): Promise<OpenedBase> => {
      const id = `${reference}\0${formatPlatform(platform)}`;
      let opened = openedBases.get(id);
      if (opened === undefined) {
        opened = (async () => {
          const image = await openBase(options, reference, file, line, stageSignal, platform);
          trace('stage: base opened');
          try {
            return {
              state: await imageState(image, blobs, stageSignal),
              created: image.config.value.created,
              digest: image.descriptor.digest,
            };
          } finally {
            await image.close();
          }
        })();
        openedBases.set(id, opened);
      }
      return opened;
    };

    const runStage = async (p: number, index: number): Promise<StageResult> => {
      stageSignal.throwIfAborted();
      const plan = plans[p]!;
      const planned = plan.stages[index]!;
      const platform = stagePlatform(planned, targets[p]!, file);
      const label = stageLabel(planned.label, multi && !shared.has(index) ? targets[p] : undefined);
      // COPY --from an image, in this stage, picks the stage's platform from an index.
      const context: BuildSession = {
        ...contexts[p]!,
        resolveImage: (reference, imageSignal) => options.resolveImage(reference, imageSignal, platform),
      };
      emit({ kind: 'stage-start', stage: label, base: planned.baseText });
      let base: ImageState;
      let baseKey;
      let baseKeyLayers: readonly Digest[] | undefined;
      let triggers: readonly string[] = [];
      let baseCreated: string | undefined;
      let args: ReadonlyMap<string, string | undefined> | undefined;
      switch (planned.base.kind) {
        case 'scratch':
          base = scratchState(platform);
          baseKey = cacheKey([{ name: 'base', value: `scratch ${chainId([])}` }]).digest;
          break;
        case 'stage': {
          const parent = context.stages.get(planned.base.index);
          if (parent === undefined)
            throw new StratumError('BUILD_FAILED', `${file}: stage ${planned.baseText} was not built`);
          base = parent.state;
          baseKey = parent.finalKey;
          baseKeyLayers = parent.keyLayers;
          baseCreated = parent.created;
          args = parent.args;
          triggers = parent.state.config.OnBuild ?? [];
          break;
        }
        case 'image': {
          const line = planned.stage.from.location.line;
          const opened = await openBaseOnce(planned.base.reference, line, platform);
          trace('stage: base ready');
          base = opened.state;
          baseCreated = opened.created;
          stageBases.set(label, {
            reference: portableReference(planned.base.reference),
            digest: opened.digest,
          });
          const warning = baseMismatchWarning(planned.base.reference, base.platform, platform, line);
          if (warning !== undefined) emit({ kind: 'warning', message: warning });
          baseKey = cacheKey([
            { name: 'base', value: chainId(base.layers.map((layer) => layer.diffId)) },
          ]).digest;
          triggers = base.config.OnBuild ?? [];
          break;
        }
      }
      if (needsEmulation(planned, triggers, base.platform, host)) {
        const notice = await emulation(base.platform, `${file}:${planned.stage.from.location.line}`);
        if (notice !== undefined) emit({ kind: 'warning', message: notice });
      }
      const runner = new StageRunner(context, {
        stage: planned.stage,
        label,
        base,
        baseKey,
        baseKeyLayers: baseKeyLayers ?? base.layers.map((layer) => layer.diffId),
        triggers,
        baseCreated,
        ...(args === undefined ? {} : { args }),
      });
      return runner.run();
    };

    // Checking (and, as root, registering) an emulator once per architecture.
    const emulators = new Map<string, Promise<string | undefined>>();
    const emulation = (platform: Platform, where: string): Promise<string | undefined> => {
      let check = emulators.get(platform.architecture);
      if (check === undefined) {
        check = ensureEmulation(platform, where);
        emulators.set(platform.architecture, check);
      }
      return check;
    };

    // Stages whose dependencies are built run side by side (as BuildKit does), one per core,
    // across platforms too; a stage shared by every platform is built once. The first failure
    // aborts the others and is the one reported.
    const slots = new Limiter(Math.max(1, Math.min(availableParallelism(), 4)));
    const node = (p: number, index: number): Promise<StageResult> => {
      const id = shared.has(index) ? `shared/${index}` : `${p}/${index}`;
      let promise = nodes.get(id);
      if (promise === undefined) {
        promise = (async () => {
          await Promise.all(
            (plans[p]!.dependencies.get(index) ?? []).map(async (dependency) => {
              contexts[p]!.stages.set(dependency, await node(p, dependency));
            }),
          );
          return slots.run(() => runStage(p, index));
        })();
        promise.catch(() => undefined); // reported through the targets below
        nodes.set(id, promise);
      }
      return promise;
    };
    let results: StageResult[];
    try {
      results = await Promise.all(targets.map((_, p) => node(p, plans[p]!.target)));
    } catch (error) {
      stageController.abort(error);
      await Promise.allSettled([...nodes.values()]);
      throw error;
    }

    for (const name of buildArgs.unused()) {
      emit({
        kind: 'warning',
        message: `build arg ${name} was given but not consumed by any ARG in ${file}`,
      });
    }
    trace('build: stages done');
    const images: ImageSource[] = [];
    for (const result of results) {
      images.push(
        await finalizeImage(result.state, blobs, `${file} (${result.label})`, result.created ?? created),
      );
    }
    const index = multi
      ? await finalizeIndex(
          images.map((built, p) => ({ image: built, platform: targets[p]! })),
          blobs,
          `${file} (${targets.map(formatPlatform).join(', ')})`,
        )
      : undefined;
    trace('build: image finalized');
    // Cache mounts for `--cache-to ...,mounts=true` (nothing happens without one).
    await cacheMountTransfer.export(stageSignal);
    const explained = { steps: Object.fromEntries([...current.entries()].map(([id, step]) => [id, step])) };
    // Records for the next build, off the path to the image: written with the cleanup (which
    // runs beside the outputs when the caller takes it over); a rebuild session writes them
    // after the outputs (its flush).
    if (rebuilds === undefined)
      recordsForNextBuild = async () => {
        await Promise.all([cache.writeExplain(explainId, explained), statCache.save()]);
      };
    else rebuilds.writeExplain(cache, explainId, explained);
    succeeded = true;
    return { image: images[0]!, ...(index === undefined ? {} : { index }), warnings };
  } finally {
    const cleanup = (async () => {
      try {
        if (succeeded) await recordsForNextBuild?.();
        trace('cleanup: records');
        // Only a successful build's filesystems are whole: a failed step may have left one half done.
        if (succeeded) for (const built of nodes.values()) await (await built).removeRootfs();
        trace('cleanup: rootfs removed');
      } finally {
        await sweepingBlobs;
        await releaseNetworks();
        spareInits.release();
        await snapshotter.close();
        trace('cleanup: snapshotter closed');
        await workspace.dispose();
        trace('cleanup: workspace disposed');
      }
    })();
    // A failed build has cleaned up when it throws; a successful one may hand its cleanup over.
    // A failed build's error is the one to report: a cleanup failing after it (what is left is
    // a dead session's, removed by the next build) must not replace it.
    if (succeeded && options.cleanupLater !== undefined) options.cleanupLater(cleanup);
    else if (succeeded) await cleanup;
    else await cleanup.catch(() => undefined);
  }
}

/** A hold on the spare inits as a closable resource, for a rebuild session to keep. */
function spareInitsHold(): { close(): Promise<void> } {
  const release = holdSpareInits();
  return {
    close: () => {
      release();
      return Promise.resolve();
    },
  };
}

/** A base image as the stages starting from it use it. */
interface OpenedBase {
  readonly state: ImageState;
  readonly created: string | undefined;
  readonly digest: Digest;
}

/**
 * The Dockerfile as a path that means the same on every machine: relative to the context when
 * inside it (`Dockerfile`, `build/app.Dockerfile`), else its base name; `Dockerfile` for standard input.
 */
function dockerfilePlace(contextDir: string, dockerfilePath: string | undefined): string {
  if (dockerfilePath === undefined) return 'Dockerfile';
  const inside = relative(resolve(contextDir), resolve(dockerfilePath));
  return inside === '' || inside.startsWith('..') || isAbsolute(inside) ? basename(dockerfilePath) : inside;
}

/**
 * A base reference as it may travel in an exported cache: a file transport's directories are
 * this machine's, so only the last element stays (`oci:/home/me/base:1` → `oci:…/base:1`).
 */
function portableReference(reference: string): string {
  const match = /^(oci|oci-archive|docker-archive):(.*)$/.exec(reference);
  if (match === null) return reference;
  const rest = match[2]!;
  const slash = rest.lastIndexOf('/');
  return slash < 0 ? reference : `${match[1]}:…/${rest.slice(slash + 1)}`;
}

/** A stage for another architecture with RUN steps (or ONBUILD triggers from its base) needs an emulator. */
function needsEmulation(
  planned: PlannedStage,
  triggers: readonly string[],
  platform: Platform,
  host: Platform,
): boolean {
  if (platform.architecture === host.architecture) return false;
  return triggers.length > 0 || planned.stage.instructions.some((instruction) => instruction.kind === 'run');
}

async function openBase(
  options: BuildOptions,
  reference: string,
  file: string,
  line: number,
  signal: AbortSignal | undefined,
  platform: Platform,
): Promise<ImageSource> {
  try {
    return await options.resolveImage(reference, signal, platform);
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

/** STRATUM_SNAPSHOTTER=overlay|scan|auto picks the snapshotter when the build does not say. */
function snapshotterFromEnvironment(): SnapshotterRequest {
  const text = process.env['STRATUM_SNAPSHOTTER'];
  if (text === undefined || text === '') return 'auto';
  const name = parseSnapshotterRequest(text);
  if (name === undefined) {
    throw new StratumError('USAGE', `STRATUM_SNAPSHOTTER=${text}: expected overlay, scan or auto`);
  }
  return name;
}
export type { SecretMaterial } from './build-session.js';

/** `STRATUM_ISOLATION` (auto, namespaces, proot), for callers that cannot pass `--isolation`. */
function isolationFromEnvironment(): IsolationRequest {
  const value = process.env['STRATUM_ISOLATION'];
  if (value === undefined || value === '') return 'auto';
  if (value === 'auto' || value === 'namespaces' || value === 'proot') return value;
  throw new StratumError('USAGE', `STRATUM_ISOLATION=${value}: expected auto, namespaces or proot`);
}

/** The build's contextReady: the caller's, asked once (its first call marks the first read). */
function onceReady(ready: (() => Promise<unknown>) | undefined): () => Promise<unknown> {
  let asked: Promise<unknown> | undefined;
  return () => (asked ??= ready === undefined ? Promise.resolve() : ready());
}
