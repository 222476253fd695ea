// buildImage: the library's build entry — flags checked before any work, inputs materialised
// (stdin context, secrets from env), the executor run, then every output written. Over ~400
// lines because each output kind (image, daemon, local, tar) and each record (--iidfile,
// --metadata-file) is wired here once; their logic lives in the modules it imports.
import { trace } from '../util/trace.js';
import { cacheDirLayout, defaultCacheDir } from '../util/cache-dir.js';
import { constants } from 'node:fs';
import { makeDirectoriesSync } from '../util/directories.js';
import type { KeyObject } from 'node:crypto';
import { access, readFile, rm, stat } from 'node:fs/promises';
import { makeOwnedTempDir } from '../util/temp-dir.js';
import { basename, join, relative, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { SecretSource } from './flags.js';
import { StratumError, destinationError } from '../errors.js';
import { compressionName, type CompressionSpec } from '../oci/compression.js';
import { exportFilesystemAsTar, exportFilesystemToDirectory } from './filesystem-export.js';
import { withLabelsAndAnnotations } from './image-patch.js';
import type { Descriptor } from '../oci/types.js';
import { writeOutputFile } from '../util/atomic-file.js';
import { checkOutput, descriptorOf } from '../util/output-path.js';
import { loadIntoDockerDaemon } from '../transport/docker-daemon/writer.js';
import { outputCompression, parseOutputs, type OutputTarget } from './output-spec.js';
import { contextFromStream } from './stdin-context.js';
import { checkBuildContexts, withNamedContexts, type NamedContext } from './named-contexts.js';
import { isImageIndex, type AnyImage, type ImageSource } from '../oci/image.js';
import type { Platform } from '../oci/types.js';
import { formatPlatform } from '../oci/platform.js';
import { targetPlatforms } from '../executor/platforms.js';
import { describeTarget, readContextFile, readContextDockerfile } from '../executor/context/index.js';
import { parseImageReference } from '../oci/reference.js';
import { checkDestination } from '../transport/destination.js';
import { ImageStore, defaultDataDir } from '../transport/store/store.js';
import { openImage, writeImage } from '../images/images.js';
import {
  builtImage,
  executeBuild,
  type BuildOptions,
  type BuildResult,
  type SecretMaterial,
} from '../executor/build.js';
import { RegistryContext, openRegistryImage, pushImage, pushIndex } from '../registry/index.js';
import { RemoteCaches } from '../cache/remote/remote-caches.js';
import { LayerCache } from '../cache/store.js';
import { attestsAnything, type AttestationRequest } from '../attest/index.js';
import { loadPrivateKey } from '../attest/dsse.js';
import {
  BuildRecorder,
  attestBuild,
  checkAttestationOutputs,
  keepsIndex,
  storeSignedProvenance,
} from './attestations.js';
import { checkFailure, runChecks } from './checks.js';
import { shortWarning } from '../parser/index.js';

/**
 * `stratum build` as a library call: wires the build engine to the image transports (FROM and
 * --from can name a layout, an archive, a local store image or a registry image) and writes
 * the result to each destination once the whole build has succeeded.
 */
export interface BuildImageOptions extends Omit<BuildOptions, 'resolveImage' | 'blobs' | 'dockerfile'> {
  /** The Dockerfile's bytes; may be left out with `contextArchive` (then its `Dockerfile`). */
  readonly dockerfile?: string | Uint8Array;
  /** Names for the local image store (`-t`). */
  readonly tags?: readonly string[];
  /**
   * Awaited before anything is written (`build --watch`: a build that read its context ahead
   * of the quiet time writes once the burst of changes is over, or is aborted). Default: none.
   */
  readonly outputsReady?: Promise<unknown>;
  /**
   * Destinations (`-o`): transports (`oci:DIR:TAG`, ...) or BuildKit's forms
   * (`type=local,dest=DIR`, `type=tar,dest=-`, ...); see output-spec.ts.
   */
  readonly outputs?: readonly string[];
  /** Load the image into the Docker daemon under every `tags` name (`--load`). */
  readonly load?: boolean;
  readonly dataDir?: string;
  /** Registry hosts reached over plain HTTP. */
  readonly insecureRegistries?: readonly string[];
  /** Push the image to its registry under every `tags` name (`build --push -t host/repo:tag`). */
  readonly push?: boolean;
  /** `registry:HOST/REPO[:TAG]` caches to read after a local miss (`--cache-from`). */
  readonly cacheFrom?: readonly string[];
  /** `registry:HOST/REPO[:TAG]` caches that get every step's entry after success (`--cache-to`). */
  readonly cacheTo?: readonly string[];
  /** Secrets by id from files or environment variables (`--secret`); merged over `secrets`. */
  readonly secretSources?: Readonly<Record<string, SecretSource>>;
  /** Labels for the final image's config (`--label`). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Annotations for the final image's manifest (`--annotation`). */
  readonly annotations?: Readonly<Record<string, string>>;
  /** Writes the image ID here (`--iidfile`): the config digest when loaded into Docker, else the manifest digest. */
  readonly iidFile?: string;
  /** Writes BuildKit's metadata JSON here (`--metadata-file`). */
  readonly metadataFile?: string;
  /** The context as a tar (or a lone Dockerfile) on a stream (`stratum build -`). */
  readonly contextArchive?: Readable;
  /** `--build-context NAME=...`: what FROM / --from NAME mean instead of an image NAME. */
  readonly buildContexts?: Readonly<Record<string, NamedContext>>;
  /** Re-resolve base images by name from their registry even when the local store has them (`--pull`). */
  readonly pull?: boolean;
  /** Where `type=tar,dest=-` writes (default: process.stdout). */
  readonly stdout?: Writable;
  /**
   * Provenance and SBOM to attach (`--provenance`, `--sbom`, `--attest`; see parseAttestationFlags).
   * Nothing is attached by default; with attestations the image is written as an index.
   */
  readonly attestations?: AttestationRequest;
  /**
   * A PEM private key (ECDSA P-256 or Ed25519) to sign the provenance with (`--sign-key`): DSSE
   * envelopes stored where cosign looks (`sha256-<digest>.att`), checked by verifyAttestations.
   */
  readonly signKey?: string;
}

export interface BuildImageResult extends BuildResult {
  readonly digest: string;
  /** The config digest (what Docker calls the image ID). */
  readonly imageId: string;
  readonly written: readonly string[];
  /** Whether something (a tar) was written to `stdout`. */
  readonly wroteStdout: boolean;
  /** BuildKit's check warnings for the stages built (`Rule: message (line N)`), for buildx's summary. */
  readonly checkWarnings: readonly string[];
}

export async function buildImage(options: BuildImageOptions): Promise<BuildImageResult> {
  const dataDir = options.dataDir ?? defaultDataDir();
  const store = new ImageStore(dataDir);
  // Usage errors before any work.
  const targets = parseOutputs(options.outputs ?? [], options.tags ?? [], options.load === true);
  for (const tag of options.tags ?? []) parseImageReference(tag);
  const compression = layerCompression(options.compression, options.outputs ?? []);
  // Unwritable destinations fail before any work, with nothing written.
  await checkOutputs(targets, options);
  const attestations = options.attestations ?? {};
  const dropsAttestations = checkAttestationOutputs(
    attestations,
    targets,
    (options.tags ?? []).length > 0 || options.push === true,
  );
  await checkSecretFiles(options.secrets ?? {});
  const signKey = await loadSignKey(options.signKey, attestations);
  const platforms = targetPlatforms(options.platform);
  if (platforms.length > 1) {
    const single = targets.find(
      (target) => target.kind !== 'image' || target.reference.startsWith('docker-archive:'),
    );
    if (single !== undefined) {
      const what =
        single.kind === 'image'
          ? `${single.reference}: a docker-archive holds one platform`
          : single.kind === 'daemon'
            ? '--load (the Docker daemon takes one platform)'
            : `-o type=${single.kind}: a filesystem export holds one platform`;
      throw new StratumError(
        'USAGE',
        `${what}, but --platform names ${platforms.length} (${platforms.map(formatPlatform).join(', ')}); build with a single --platform, or write oci:DIR or oci-archive:FILE`,
      );
    }
    if (Object.keys(options.labels ?? {}).length + Object.keys(options.annotations ?? {}).length > 0)
      throw new StratumError(
        'USAGE',
        '--label and --annotation apply to single-platform builds only (for now); use LABEL in the Dockerfile',
      );
  }
  if (options.push === true && (options.tags ?? []).length === 0) {
    throw new StratumError('USAGE', '--push needs at least one -t REGISTRY/REPOSITORY[:TAG]');
  }
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const tmpDir = options.tmpDir ?? cacheDirLayout(cacheDir).tmp;
  const secrets = await checkSecrets(options.secretSources ?? {});
  await checkBuildContexts(options.buildContexts ?? {});
  for (const [id, socket] of Object.entries(options.ssh ?? {})) {
    const socketStat = await stat(socket).catch(() => undefined);
    if (socketStat?.isSocket() !== true)
      throw new StratumError('USAGE', `--ssh ${id}=${socket}: not a socket (is the ssh agent running?)`);
  }
  makeDirectoriesSync(tmpDir);
  // A context on standard input is unpacked here. Named after this process, so what a killed
  // build left goes at the next build. Made only for such a context: a directory made and
  // removed costs ~2 ms of a build on a slow disk.
  const scratch =
    options.contextArchive === undefined ? undefined : await makeOwnedTempDir('stratum-inputs-', tmpDir);
  const removeScratch = (): Promise<void> =>
    scratch === undefined ? Promise.resolve() : rm(scratch, { recursive: true, force: true });
  const warnings: string[] = [];
  const recorder = new BuildRecorder();
  // The builds' cleanups run while the outputs are written (executeBuild's cleanupLater).
  const cleanups: Promise<void>[] = [];
  /** Whether the caller took the cleanup over (options.cleanupLater): then it ends there. */
  let handedOver = false;
  try {
    const secretMaterial = { ...options.secrets, ...secretsInMemory(secrets) };
    let contextDir = options.contextDir;
    let dockerfile = options.dockerfile;
    let dockerfilePath = options.dockerfilePath;
    if (options.contextArchive !== undefined && scratch !== undefined) {
      contextDir = join(scratch, 'context');
      const fromStream = await contextFromStream(options.contextArchive, contextDir, options.signal);
      dockerfile ??= fromStream.dockerfile;
      if (dockerfile === undefined) {
        // The tar is untrusted: its Dockerfile's symlinks resolve inside it (context-file.ts).
        const name = dockerfilePath ?? 'Dockerfile';
        const read = await readContextFile(contextDir, name);
        if (read.content === undefined)
          throw new StratumError(
            'NOT_FOUND',
            `${name}: no such Dockerfile in the context tar ${describeTarget(read.inRoot, name)}`.trimEnd(),
          );
        dockerfile = read.content;
        dockerfilePath = join(contextDir, name);
      }
    }
    if (dockerfile === undefined) {
      const read = await readContextDockerfile(contextDir, dockerfilePath);
      if (read.content === undefined)
        throw new StratumError('NOT_FOUND', `${dockerfilePath ?? 'Dockerfile'}: no such Dockerfile`);
      dockerfile = read.content;
    }
    // BuildKit's checks run before anything is built; `# check=error=true` stops the build here.
    const checks = await runChecks(
      {
        dockerfile,
        file: options.dockerfilePath ?? 'Dockerfile',
        contextDir,
        ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
        ...(options.buildArgs === undefined ? {} : { buildArgs: options.buildArgs }),
        ...(options.target === undefined ? {} : { target: options.target }),
        ...(options.platform === undefined ? {} : { platform: options.platform }),
      },
      false,
    );
    const failure = checkFailure(checks);
    if (failure !== undefined) throw failure;
    // FROM, --push and the shared cache share where each blob was seen, so a push or a cache
    // export mounts base layers from the repository they were pulled from.
    const registryContext = new RegistryContext();
    const shared = await RemoteCaches.open({
      registryContext,
      cacheFrom: options.cacheFrom ?? [],
      cacheTo: options.cacheTo ?? [],
      insecureRegistries: options.insecureRegistries ?? [],
      ...(options.signal ? { signal: options.signal } : {}),
      onWarning: (message) => {
        warnings.push(message);
        options.onEvent?.({ kind: 'warning', message });
      },
    });
    // The default cache shares its blobs with the local image store, so bytes are stored once.
    // Both are leased: what the build checks for or writes stays, whatever a `cache prune`
    // elsewhere decides, until the outputs are written (oci/leases.ts).
    const blobs = options.cacheDir === undefined ? store.blobs : new LayerCache(cacheDir).blobs;
    const releaseAll = async (): Promise<void> => {
      await shared.close();
      await blobs.releaseLease();
      await store.blobs.releaseLease();
    };
    try {
      const buildDockerfile = dockerfile;
      const runBuild = (overrides: Partial<BuildOptions>): Promise<BuildResult> =>
        executeBuild({
          ...options,
          ...(compression === undefined ? {} : { compression }),
          contextDir,
          dockerfile: buildDockerfile,
          ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
          secrets: secretMaterial,
          cacheDir,
          blobs,
          sharedCache: shared,
          onEvent: recorder.recordEvents(options.onEvent),
          cleanupLater: (cleanup) => {
            cleanup.catch(() => undefined); // awaited below, after the outputs
            cleanups.push(cleanup);
          },
          resolveImage: withNamedContexts(
            options.buildContexts ?? {},
            blobs,
            recorder.recordImages((reference, signal, platform) =>
              resolveBaseImage(
                reference,
                dataDir,
                options.insecureRegistries ?? [],
                signal,
                platform,
                options.pull === true,
                { registryContext, tmpDir },
              ),
            ),
          ),
          ...overrides,
        });
      trace('build: options checked, inputs read');
      const result = await runBuild({});
      const built = builtImage(result);
      const plain = isImageIndex(built)
        ? built
        : await withLabelsAndAnnotations(built, blobs, options.labels ?? {}, options.annotations ?? {});
      const image = attestsAnything(attestations)
        ? await attestBuild({
            request: attestations,
            recorder,
            built: plain,
            blobs,
            names: [...(options.tags ?? []), ...targets.filter(keepsIndex).flatMap(targetNames)],
            targets: targetPlatforms(options.platform),
            dockerfile: {
              name: dockerfilePath === undefined ? 'Dockerfile' : relativeName(contextDir, dockerfilePath),
              bytes: Buffer.from(buildDockerfile),
            },
            ...(dockerfilePath === undefined ? {} : { dockerfilePath }),
            contextDir,
            buildArgs: options.buildArgs ?? {},
            ...(options.target === undefined ? {} : { target: options.target }),
            ...(options.platform === undefined ? {} : { platformFlag: options.platform }),
            locals: Object.entries(options.buildContexts ?? {})
              .filter(([, context]) => context.kind === 'directory')
              .map(([name]) => name),
            secretIds: Object.keys(secretMaterial),
            sshIds: Object.keys(options.ssh ?? {}),
            network: options.network ?? 'default',
            ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
            // A stage again, from the cache this build just filled: its image, for BUILDKIT_SBOM_SCAN_STAGE.
            buildStage: async (stage, platform) =>
              (
                await runBuild({
                  target: stage,
                  platform: formatPlatform(platform),
                  onEvent: () => undefined,
                })
              ).image,
            onWarning: (message) => {
              warnings.push(message);
              options.onEvent?.({ kind: 'warning', message });
            },
            ...(options.signal ? { signal: options.signal } : {}),
          })
        : plain;
      for (const message of dropsAttestations) {
        warnings.push(message);
        options.onEvent?.({ kind: 'warning', message });
      }
      if (options.outputsReady !== undefined) {
        await options.outputsReady;
        options.signal?.throwIfAborted();
      }
      trace('build: writing outputs');
      const written = await writeResult(
        image,
        targets,
        options,
        store,
        dataDir,
        tmpDir,
        registryContext,
        plain,
      );
      if (signKey !== undefined && isImageIndex(image)) {
        const signed = await storeSignedProvenance({
          index: image,
          key: signKey,
          blobs,
          tags: options.tags ?? [],
          push: options.push === true,
          targets,
          write: async (att, reference) => {
            await writeImage(att, reference, {
              dataDir,
              insecureRegistries: options.insecureRegistries ?? [],
              tmpDir,
              ...(options.signal ? { signal: options.signal } : {}),
            });
          },
          onWarning: (message) => {
            warnings.push(message);
            options.onEvent?.({ kind: 'warning', message });
          },
        });
        written.names.push(...signed);
        for (const destination of signed)
          options.onEvent?.({ kind: 'image', digest: image.descriptor.digest, destination });
      }
      if (shared.active) {
        // After the push, so layers already in the registry are mounted rather than uploaded again.
        await shared.export(blobs, options.signal ? { signal: options.signal } : {});
      }
      const loaded = targets.some((target) => target.kind === 'daemon');
      const digest = image.descriptor.digest;
      // An index has no config: its own digest is what names it.
      const imageId = isImageIndex(image) ? digest : image.config.digest;
      trace('build: records');
      await writeBuildRecords(options, {
        digest,
        imageId,
        descriptor: image.descriptor,
        loaded,
        names: [...(options.tags ?? []), ...targets.flatMap(targetNames)],
      });
      // The caller may take the cleanup over too (`--watch` prints its result line first):
      // the builds' unmounts and removals, then the leases (the outputs are written) and the
      // scratch directory.
      if (options.cleanupLater !== undefined) {
        const builds = Promise.all(cleanups.splice(0));
        handedOver = true;
        options.cleanupLater(
          (async () => {
            try {
              await builds;
            } finally {
              await releaseAll();
              await removeScratch();
            }
          })(),
        );
      } else for (const cleanup of cleanups) await cleanup;
      trace('build: cleanups done');
      return {
        ...result,
        image: isImageIndex(plain) ? result.image : plain,
        warnings: [...result.warnings, ...warnings],
        digest,
        imageId,
        written: written.names,
        wroteStdout: written.wroteStdout,
        checkWarnings: checks.warnings.map(shortWarning),
      };
    } finally {
      if (!handedOver) {
        await Promise.allSettled(cleanups);
        await releaseAll();
        trace('build: leases released');
      }
    }
  } finally {
    trace('build: outputs written');
    if (!handedOver) await removeScratch();
  }
}

/**
 * Every path the user named for an output, checked as oci/output-path.ts rules (what may stand
 * there, kernel filesystems, writable directories), each error naming the path as given.
 */
async function checkOutputs(targets: readonly OutputTarget[], options: BuildImageOptions): Promise<void> {
  for (const target of targets) {
    if (target.kind === 'image') await checkDestination(parseImageReference(target.reference));
    else if (target.kind === 'local')
      await checkOutput(target.dir, 'directory', {
        label: `type=local,dest=${target.dir}`,
        createParents: true,
      });
    else if (target.kind === 'tar' && target.file !== undefined)
      await checkOutput(target.file, 'file', { label: `type=tar,dest=${target.file}`, createParents: true });
  }
  if (options.iidFile !== undefined)
    await checkOutput(resolve(options.iidFile), 'file', { label: `--iidfile ${options.iidFile}` });
  if (options.metadataFile !== undefined)
    await checkOutput(resolve(options.metadataFile), 'file', {
      label: `--metadata-file ${options.metadataFile}`,
    });
}

function targetNames(target: OutputTarget): string[] {
  switch (target.kind) {
    case 'daemon':
      return [...target.names];
    case 'image': {
      const reference = parseImageReference(target.reference);
      if (reference.transport === 'docker') return [reference.reference];
      if (reference.transport === 'store' || reference.transport === 'docker-daemon') return [reference.name];
      return [];
    }
    case 'local':
    case 'tar':
      return [];
  }
}

/** `--iidfile` and `--metadata-file`, in BuildKit's shapes, written whole or not at all. */
async function writeBuildRecords(
  options: BuildImageOptions,
  record: {
    readonly digest: string;
    readonly imageId: string;
    readonly descriptor: Descriptor;
    readonly loaded: boolean;
    readonly names: readonly string[];
  },
): Promise<void> {
  if (options.iidFile !== undefined) {
    // As buildx: what `docker run` takes when the image went to Docker, else the manifest digest.
    await writeOutputFile(resolve(options.iidFile), record.loaded ? record.imageId : record.digest, {
      label: `--iidfile ${options.iidFile}`,
    });
  }
  if (options.metadataFile !== undefined) {
    const metadata: Record<string, unknown> = {
      'containerimage.config.digest': record.imageId,
      'containerimage.descriptor': {
        mediaType: record.descriptor.mediaType,
        digest: record.descriptor.digest,
        size: record.descriptor.size,
      },
      'containerimage.digest': record.digest,
    };
    const names = [...new Set(record.names)];
    if (names.length > 0) metadata['image.name'] = names.join(',');
    await writeOutputFile(resolve(options.metadataFile), `${JSON.stringify(metadata, null, 2)}\n`, {
      label: `--metadata-file ${options.metadataFile}`,
    });
  }
}

/** Every secret's source must exist now, not when a RUN first asks for it. */
async function checkSecrets(
  sources: Readonly<Record<string, SecretSource>>,
): Promise<Readonly<Record<string, SecretSource>>> {
  for (const [id, source] of Object.entries(sources)) {
    // A source that is missing is bad input (exit 1), not a malformed flag (exit 2).
    if ('env' in source) {
      if (process.env[source.env] === undefined)
        throw new StratumError(
          'NOT_FOUND',
          `--secret id=${id}: environment variable ${source.env} is not set`,
        );
    } else await checkSecretFile(id, source.file);
  }
  return sources;
}

async function checkSecretFile(id: string, path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  const readable =
    info !== undefined &&
    (await access(path, constants.R_OK).then(
      () => true,
      () => false,
    ));
  if (!readable || info.isDirectory()) {
    throw new StratumError(
      'NOT_FOUND',
      `--secret id=${id}: ${path} ${readable ? 'is a directory' : 'does not exist or cannot be read'}`,
    );
  }
}

/**
 * A secret file is read by the step that mounts it; one given by environment variable is held
 * in memory: no secret is ever written to disk, where a killed build would leave it.
 */
function secretsInMemory(sources: Readonly<Record<string, SecretSource>>): Record<string, SecretMaterial> {
  const material: Record<string, SecretMaterial> = {};
  for (const [id, source] of Object.entries(sources)) {
    material[id] = 'file' in source ? source.file : { value: Buffer.from(process.env[source.env] ?? '') };
  }
  return material;
}

/** A secret file that is missing fails the build before any step runs (as buildx does). */
async function checkSecretFiles(secrets: Readonly<Record<string, SecretMaterial>>): Promise<void> {
  for (const [id, material] of Object.entries(secrets))
    if (typeof material === 'string') await checkSecretFile(id, material);
}

/** Stores, pushes and writes the built image to every destination; returns where it went. */
async function writeResult(
  image: AnyImage,
  targets: readonly OutputTarget[],
  options: BuildImageOptions,
  store: ImageStore,
  dataDir: string,
  tmpDir: string,
  registryContext: RegistryContext,
  /** The image without attestations: for outputs that hold one manifest (docker-archive, the daemon, filesystems). */
  plain: AnyImage = image,
): Promise<{ names: string[]; wroteStdout: boolean }> {
  const written: string[] = [];
  let wroteStdout = false;
  const digest = image.descriptor.digest;
  const signalOption = options.signal ? { signal: options.signal } : {};
  if ((options.tags ?? []).length > 0) {
    await store.put(image, options.tags ?? [], signalOption);
    written.push(...(options.tags ?? []));
    // As each destination is written, so an interrupted build can say exactly what was.
    for (const tag of options.tags ?? []) options.onEvent?.({ kind: 'image', digest, destination: tag });
  }
  if (options.push === true) {
    for (const tag of options.tags ?? []) {
      const pushOptions = {
        insecureRegistries: options.insecureRegistries ?? [],
        context: registryContext,
        ...signalOption,
      };
      const pushed = isImageIndex(image)
        ? await pushIndex(image, tag, pushOptions)
        : await pushImage(image, tag, pushOptions);
      written.push(...pushed.references.map((reference) => `docker://${reference}`));
      options.onEvent?.({
        kind: 'image',
        digest: pushed.digest,
        destination: `docker://${pushed.references[0] ?? tag}`,
      });
    }
  }
  const onWarning = (message: string): void => options.onEvent?.({ kind: 'warning', message });
  for (const target of targets) {
    let destination: string;
    switch (target.kind) {
      case 'image':
        await writeImage(keepsIndex(target) ? image : plain, target.reference, {
          dataDir,
          insecureRegistries: options.insecureRegistries ?? [],
          tmpDir,
          ...signalOption,
        });
        destination = target.reference;
        trace('build: image output written');
        // An archive sent to /dev/stdout: the digest line would corrupt it.
        if (outputDescriptor(target.reference) === 1) wroteStdout = true;
        break;
      case 'daemon':
        await loadIntoDockerDaemon(onePlatform(plain, target.kind), target.names, {
          tmpDir,
          ...signalOption,
        });
        destination = `docker-daemon:${target.names[0] ?? onePlatform(plain, target.kind).config.digest}`;
        break;
      case 'local':
        destination = `type=local,dest=${target.dir}`;
        await exportFilesystemToDirectory(onePlatform(plain, target.kind), target.dir, {
          ...signalOption,
          tmpDir,
          onWarning,
        }).catch((error: unknown) => {
          throw destinationError(destination, error);
        });
        break;
      case 'tar':
        destination = `type=tar,dest=${target.file ?? '-'}`;
        await exportFilesystemAsTar(
          onePlatform(plain, target.kind),
          target.file,
          options.stdout ?? process.stdout,
          {
            ...signalOption,
            tmpDir,
            onWarning,
          },
        ).catch((error: unknown) => {
          throw destinationError(destination, error);
        });
        if (target.file === undefined || descriptorOf(target.file) === 1) wroteStdout = true;
        break;
    }
    written.push(destination);
    options.onEvent?.({ kind: 'image', digest, destination });
  }
  return { names: written, wroteStdout };
}

/** `--sign-key FILE`: read and checked before any work; it signs provenance, so it needs some. */
async function loadSignKey(
  path: string | undefined,
  attestations: AttestationRequest,
): Promise<KeyObject | undefined> {
  if (path === undefined) return undefined;
  if (attestations.provenance === undefined)
    throw new StratumError(
      'USAGE',
      `--sign-key ${path}: signs the provenance; add --provenance=mode=min|max`,
    );
  const pem = await readFile(path).catch((error: unknown) => {
    throw new StratumError('NOT_FOUND', `--sign-key ${path}: ${(error as Error).message}`);
  });
  return loadPrivateKey(pem, `--sign-key ${path}`);
}

/** The Dockerfile's name as provenance records it: relative to the context when inside it. */
function relativeName(contextDir: string, path: string): string {
  const inside = relative(resolve(contextDir), resolve(path));
  return inside.startsWith('..') || inside === '' ? basename(path) : inside;
}

/** The descriptor an archive output's path names (oci-archive:/dev/stdout), else undefined. */
function outputDescriptor(reference: string): number | undefined {
  const parsed = parseImageReference(reference);
  return parsed.transport === 'oci-archive' || parsed.transport === 'docker-archive'
    ? descriptorOf(resolve(parsed.path))
    : undefined;
}

/** A filesystem export or a daemon load takes one image; buildImage refuses an index for them first. */
function onePlatform(image: AnyImage, kind: string): ImageSource {
  if (isImageIndex(image)) throw new StratumError('USAGE', `-o type=${kind} takes one platform`);
  return image;
}

/**
 * FROM and --from: a transport reference opens that image; a plain name is looked up in the
 * local store first and then pulled (lazily, blob by blob) from its registry (with `pull`, the
 * registry is asked first and alone).
 */
export async function resolveBaseImage(
  reference: string,
  dataDir: string,
  insecureRegistries: readonly string[],
  signal?: AbortSignal,
  platform?: Platform,
  pull = false,
  shared: { readonly registryContext?: RegistryContext; readonly tmpDir?: string } = {},
): Promise<ImageSource> {
  const { registryContext, tmpDir } = shared;
  const parsed = parseImageReference(reference);
  const readOptions = {
    ...(signal ? { signal } : {}),
    ...(platform ? { platform } : {}),
    ...(tmpDir ? { tmpDir } : {}),
  };
  const pullOptions = {
    insecureRegistries,
    ...(registryContext ? { context: registryContext } : {}),
    ...readOptions,
  };
  if (parsed.transport === 'docker') {
    return openRegistryImage(parsed.reference, pullOptions);
  }
  if (parsed.transport !== 'store') return openImage(parsed, { dataDir, ...readOptions });
  // --pull: the registry's current image for the name, whatever the store holds.
  if (pull) return openRegistryImage(parsed.name, pullOptions);
  try {
    return await new ImageStore(dataDir).open(parsed.name, readOptions);
  } catch (error) {
    if (!(error instanceof StratumError) || error.code !== 'NOT_FOUND') throw error;
    return openRegistryImage(parsed.name, pullOptions);
  }
}

/** `--compression`, or the compression the `-o` values ask for; both given must agree. */
function layerCompression(
  flag: CompressionSpec | undefined,
  outputs: readonly string[],
): CompressionSpec | undefined {
  const fromOutputs = outputCompression(outputs);
  if (flag === undefined || fromOutputs === undefined) return flag ?? fromOutputs;
  if (flag.algorithm !== fromOutputs.algorithm || flag.level !== fromOutputs.level)
    throw new StratumError(
      'USAGE',
      `--compression ${compressionName(flag)} and an --output's compression=${compressionName(fromOutputs)} disagree; one build writes one set of layers`,
    );
  return flag;
}
