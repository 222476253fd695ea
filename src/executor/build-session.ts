import type { BlobStore } from '../oci/blob-store.js';
import type { CompressionSpec } from '../oci/compression.js';
import type { ImageSource } from '../oci/image.js';
import type { Digest, Platform } from '../oci/types.js';
import type { BuildArgUsage } from './args.js';
import type { ExplainRecord } from '../cache/store.js';
import type { CacheSource } from '../cache/source.js';
import type { KeyComponent } from '../cache/key.js';
import type { RecordedBase } from '../cache/step-record.js';
import type { CacheMountTransfer } from './cache-mount-transfer.js';
import type { IgnoreMatcher, SourceFileDigest, StatCache } from './context/index.js';
import type { ImageState } from './image-state.js';
import type { ProgressListener } from './progress.js';
import type { IsolationChoice, Ulimit } from './sandbox/index.js';
import type { Workspace } from '../util/workspace.js';
import type { LazySnapshotter } from '../snapshot/choose.js';

/** A secret: a host file read when a step mounts it, or bytes held in memory (`--secret id=X,env=VAR`). */
export type SecretMaterial = string | { readonly value: Uint8Array };

/**
 * Everything the steps of one build share: made once by executeBuild (build.ts) and read by the
 * stage runner and the steps. (Named a session, not a "context", because the build context is
 * Docker's word for the files sent to the build: executor/context/.)
 */
export interface BuildSession {
  /** The Dockerfile's name in messages (`Dockerfile`, `build/app.Dockerfile`). */
  readonly file: string;
  readonly escapeChar: '\\' | '`';
  readonly contextDir: string;
  /** Called and awaited before any file of contextDir is read (see BuildOptions.contextReady). */
  readonly contextReady: () => Promise<unknown>;
  readonly ignore: IgnoreMatcher;
  readonly buildArgs: BuildArgUsage;
  /** Meta ARG values, plus the predefined platform ARGs. */
  readonly metaArgs: ReadonlyMap<string, string>;
  readonly platform: Platform;
  /** RUN's network unless a step says otherwise; `default` is a private namespace (sandbox/network.ts). */
  readonly network: 'host' | 'none' | 'default';
  /** Secret id → host file (from `--secret id=ID,src=PATH`). */
  readonly secrets: ReadonlyMap<string, SecretMaterial>;
  /** SSH agent id → host socket (from `--ssh`). */
  readonly ssh: ReadonlyMap<string, string>;
  /** How RUN steps are isolated: chosen (and logged) at the first RUN. */
  readonly isolation: () => Promise<IsolationChoice>;
  /** Called as each RUN step starts, cached or not: the spare inits count the RUNs still to come. */
  readonly runStarting: () => void;
  /** What the person running the build granted: `RUN --network=host` and `--security=insecure` need it. */
  readonly allow: readonly ('network.host' | 'security.insecure')[];
  /** `--add-host` lines for RUN's /etc/hosts. */
  readonly extraHosts: readonly { readonly host: string; readonly ip: string }[];
  /** `--shm-size` in bytes; undefined keeps the sandbox's 64 MiB. */
  readonly shmSize: number | undefined;
  readonly ulimits: readonly Ulimit[];
  /** The local cache, then the `--cache-from` / `--cache-to` registries when any were given. */
  readonly cache: CacheSource;
  /** Stage labels whose steps must not be taken from the cache (`--no-cache`, `--no-cache-filter`). */
  readonly ignoreCache: (stageLabel: string) => boolean;
  readonly blobs: BlobStore;
  readonly workspace: Workspace;
  readonly statCache: StatCache;
  readonly emit: ProgressListener;
  readonly explain: boolean;
  /** The key components of the last build of this Dockerfile, to explain misses. */
  readonly previous: ExplainRecord | undefined;
  /** Filled in as steps run; written back to the cache at the end. */
  readonly current: Map<string, ExplainStep>;
  readonly signal: AbortSignal | undefined;
  /** RFC 3339 `created` for history and config; from SOURCE_DATE_EPOCH when set. */
  readonly created: string | undefined;
  readonly sourceDateEpoch: number | undefined;
  /** How the layers this build writes are compressed (`--compression`). */
  readonly compression: CompressionSpec;
  /** Opens FROM / --from images that are not stages (local store names, transports, registries). */
  readonly resolveImage: (reference: string, signal?: AbortSignal) => Promise<ImageSource>;
  /** Results of the stages built so far, by index. */
  readonly stages: Map<number, StageResult>;
  readonly stageNames: ReadonlyMap<string, number>;
  /** Makes stage rootfs on the snapshotter this build uses (overlay or scan). */
  readonly snapshotter: LazySnapshotter;
  /** Persistent directories for `RUN --mount=type=cache`. */
  readonly cacheMountsDir: string;
  /** Cache mounts restored from imported caches and exported with `mounts=true`. */
  readonly cacheMountTransfer: CacheMountTransfer;
  /**
   * Which Dockerfile this is, in words that hold on any machine (relative to the context, else
   * its base name) and the target: exported with each entry, for explaining misses elsewhere.
   */
  readonly explainPlace: { readonly dockerfile: string; readonly target: string };
  /** Each stage's base (by label), for `--explain` to name a changed base by reference and digest. */
  readonly stageBases: Map<string, RecordedBase>;
}

export interface ExplainStep {
  readonly key: Digest;
  readonly components: readonly KeyComponent[];
  /** For COPY/ADD: each selected source, to say which file changed. */
  readonly files?: Readonly<Record<string, SourceFileDigest>>;
  /** For RUN: what each context bind mount showed, by key component name (`mount /target`). */
  readonly mountFiles?: Readonly<Record<string, Readonly<Record<string, SourceFileDigest>>>>;
  /** The stage's base image (reference as written, manifest digest) or base stage. */
  readonly base?: RecordedBase;
}

export interface StageResult {
  readonly label: string;
  readonly state: ImageState;
  /** The key after the stage's last step: what later stages' keys build on. */
  readonly finalKey: Digest;
  /** The stage's DiffIDs as the cache knows them (before SOURCE_DATE_EPOCH; see StepPosition). */
  readonly keyLayers: readonly Digest[];
  /** The time of the stage's last step (see StageRunner.created). */
  readonly created: string | undefined;
  /** The stage's ARGs and their values, which a stage built FROM it starts with. */
  readonly args: ReadonlyMap<string, string | undefined>;
  /** The stage's root filesystem, materialised on demand (for COPY --from and bind mounts). */
  readonly rootfs: () => Promise<string>;
  /** After the build succeeded: the stage's rootfs is removed (the snapshotter may keep it for the next build). */
  readonly removeRootfs: () => Promise<void>;
}
