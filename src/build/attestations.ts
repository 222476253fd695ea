// The build's side of attestations (src/attest/ makes them): what the build records as it runs
// (every image it opens, every step it ends), which outputs can hold an image index and which
// drop the attestations, as buildx tells them apart.
import { StratumError } from '../errors.js';
import {
  attachAttestations,
  attestsAnything,
  sbomScanSettings,
  type AttestationRequest,
  type ImageMaterial,
  type OtherMaterial,
  type StepRecord,
} from '../attest/index.js';
import type { KeyObject } from 'node:crypto';
import { cosignAttestationImage, cosignAttestationTag, signProvenance } from '../attest/cosign.js';
import type { ProgressListener } from '../executor/progress.js';
import { parseRegistryReference } from '../registry/index.js';
import type { AnyImage, ImageIndexSource, ImageSource } from '../oci/image.js';
import { parseImageReference } from '../oci/reference.js';
import type { BlobStore } from '../oci/blob-store.js';
import type { Platform } from '../oci/types.js';
import type { OutputTarget } from './output-spec.js';

/** Records what a build reads and does, for its provenance. */
export class BuildRecorder {
  readonly startedOn = new Date();
  readonly images: ImageMaterial[] = [];
  /** ADD URLs and git sources the build fetched, once each (the `material` events). */
  readonly materials: OtherMaterial[] = [];
  private readonly ended: StepRecord[] = [];
  /** Stage labels the build started (stages it did not need never start). */
  readonly stages = new Set<string>();

  /** Wraps an image resolver: each image opened is a material, by the digest it resolved to. */
  recordImages(
    resolve: (reference: string, signal?: AbortSignal, platform?: Platform) => Promise<ImageSource>,
  ): (reference: string, signal?: AbortSignal, platform?: Platform) => Promise<ImageSource> {
    return async (reference, signal, platform) => {
      const image = await resolve(reference, signal, platform);
      this.images.push({
        reference,
        digest: image.chosenFrom?.digest ?? image.descriptor.digest,
        ...(platform === undefined ? {} : { platform }),
      });
      return image;
    };
  }

  /** Wraps the build's event listener: ended steps and started stages are kept. */
  recordEvents(listener: ProgressListener | undefined): ProgressListener {
    return (event) => {
      if (event.kind === 'stage-start') this.stages.add(event.stage);
      if (event.kind === 'material' && !this.materials.some((m) => m.uri === event.uri))
        this.materials.push({ uri: event.uri, digest: event.digest });
      if (event.kind === 'step-end' && event.outcome !== 'failed')
        this.ended.push({
          stage: event.step.stage,
          instruction: event.step.instruction,
          file: event.step.file,
          line: event.step.line,
        });
      listener?.(event);
    };
  }

  /** The steps that ended, in the order they did. */
  steps(): StepRecord[] {
    return [...this.ended];
  }
}

/** Whether an output keeps the image index (and so the attestations). */
export function keepsIndex(target: OutputTarget): boolean {
  if (target.kind !== 'image') return false;
  const transport = parseImageReference(target.reference).transport;
  return transport !== 'docker-archive' && transport !== 'docker-daemon';
}

function describeTarget(target: OutputTarget): string {
  switch (target.kind) {
    case 'image':
      return target.reference;
    case 'daemon':
      return '--load (the Docker daemon)';
    case 'local':
      return `type=local,dest=${target.dir}`;
    case 'tar':
      return `type=tar,dest=${target.file ?? '-'}`;
  }
}

/**
 * The outputs that cannot hold the attestations. buildx refuses attestations for a docker
 * exporter that cannot load an index; here, when another output keeps them, each one that drops
 * them gets a warning naming what it drops, and when none keeps them the build is refused
 * before any work (as buildx), so no one believes an SBOM went where none can go.
 */
export function checkAttestationOutputs(
  request: AttestationRequest,
  targets: readonly OutputTarget[],
  keptElsewhere: boolean,
): string[] {
  if (!attestsAnything(request)) return [];
  const what = [
    request.sbom === undefined ? undefined : 'SBOM',
    request.provenance === undefined ? undefined : 'provenance',
  ]
    .filter((name) => name !== undefined)
    .join(' and ');
  const dropping = targets.filter((target) => !keepsIndex(target));
  const keeping = keptElsewhere || targets.some(keepsIndex);
  if (dropping.length > 0 && !keeping)
    throw new StratumError(
      'USAGE',
      `${describeTarget(dropping[0]!)} holds one image manifest, not an index: the ${what} attestations would be dropped; write oci:, oci-archive:, -t (the local store) or --push as well, or leave out --provenance/--sbom/--attest`,
    );
  return dropping.map(
    (target) =>
      `${describeTarget(target)} holds one image manifest, not an index: it gets the image without its ${what} attestations (the other outputs keep them)`,
  );
}

export interface AttestInput {
  readonly request: AttestationRequest;
  readonly recorder: BuildRecorder;
  readonly built: AnyImage;
  readonly blobs: BlobStore;
  readonly names: readonly string[];
  readonly targets: readonly Platform[];
  readonly dockerfile: { readonly name: string; readonly bytes: Buffer };
  /** The path the steps name the Dockerfile by (the executor's), written as `dockerfile.name` instead. */
  readonly dockerfilePath?: string;
  readonly contextDir: string;
  readonly buildArgs: Readonly<Record<string, string>>;
  readonly target?: string;
  readonly platformFlag?: string;
  readonly locals: readonly string[];
  readonly secretIds: readonly string[];
  readonly sshIds: readonly string[];
  readonly network: string;
  readonly sourceDateEpoch?: number;
  /** Builds one stage again (from the cache) for BUILDKIT_SBOM_SCAN_STAGE. */
  readonly buildStage: (stage: string, platform: Platform) => Promise<ImageSource>;
  readonly onWarning: (message: string) => void;
  readonly signal?: AbortSignal;
}

/** The built image with its attestations, as an image index. */
export async function attestBuild(input: AttestInput): Promise<ImageIndexSource> {
  const settings =
    input.request.sbom === undefined
      ? { context: false, stages: [] }
      : sbomScanSettings(input.dockerfile.bytes, input.buildArgs, input.target);
  const ran = [...input.recorder.stages].map((label) => label.split(' (')[0]!.toLowerCase());
  const stages = settings.stages.filter((stage) => ran.includes(stage));
  for (const stage of stages)
    if (/^\d+$/.test(stage))
      input.onWarning(
        `BUILDKIT_SBOM_SCAN_STAGE: stage ${stage} has no name and is not scanned (name it with AS)`,
      );
  const named = stages.filter((stage) => !/^\d+$/.test(stage));
  return attachAttestations(input.built, {
    request: input.request,
    blobs: input.blobs,
    names: input.names,
    targets: input.targets,
    ...(settings.context ? { scanContextDir: input.contextDir } : {}),
    ...(named.length === 0
      ? {}
      : {
          stageImages: async (platform: Platform) => {
            const images = [];
            for (const stage of named) images.push({ stage, image: await input.buildStage(stage, platform) });
            return images;
          },
        }),
    ...(input.signal ? { signal: input.signal } : {}),
    facts: {
      dockerfile: input.dockerfile,
      buildArgs: input.buildArgs,
      ...(input.target === undefined ? {} : { target: input.target }),
      ...(input.platformFlag === undefined ? {} : { platformFlag: input.platformFlag }),
      locals: input.locals,
      secretIds: input.secretIds,
      sshIds: input.sshIds,
      network: input.network,
      images: input.recorder.images,
      others: input.recorder.materials,
      // Steps name the Dockerfile as the provenance does, not by a path on this machine.
      steps: input.recorder
        .steps()
        .map((step) =>
          step.file === input.dockerfilePath ? { ...step, file: input.dockerfile.name } : step,
        ),
      startedOn: input.recorder.startedOn,
      finishedOn: new Date(),
      ...(input.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: input.sourceDateEpoch }),
    },
  });
}

/**
 * `--sign-key`: the provenance, signed as DSSE envelopes, written where cosign looks beside the
 * image in every output that keeps the index (the `sha256-<hex>.att` tag of the layout, the
 * store name's repository, the registry repository). An oci-archive holds one entry: it gets
 * none, and a warning says so.
 */
export async function storeSignedProvenance(input: {
  readonly index: ImageIndexSource;
  readonly key: KeyObject;
  readonly blobs: BlobStore;
  readonly tags: readonly string[];
  readonly push: boolean;
  readonly targets: readonly OutputTarget[];
  readonly write: (image: ImageSource, reference: string) => Promise<void>;
  readonly onWarning: (message: string) => void;
}): Promise<string[]> {
  const envelopes = await signProvenance(input.index, input.key);
  if (envelopes.length === 0) return [];
  const att = await cosignAttestationImage(envelopes, input.blobs, `${input.index.name} (signed provenance)`);
  const tag = cosignAttestationTag(input.index.descriptor.digest);
  const repository = (name: string): string => {
    const ref = parseRegistryReference(name);
    return `${ref.registry}/${ref.repository}`;
  };
  const references = new Set<string>();
  for (const name of input.tags) {
    references.add(`${repository(name)}:${tag}`);
    if (input.push) references.add(`docker://${repository(name)}:${tag}`);
  }
  for (const target of input.targets) {
    if (!keepsIndex(target) || target.kind !== 'image') continue;
    const parsed = parseImageReference(target.reference);
    if (parsed.transport === 'oci') references.add(`oci:${parsed.path}:${tag}`);
    else if (parsed.transport === 'docker') references.add(`docker://${repository(parsed.reference)}:${tag}`);
    else if (parsed.transport === 'store') references.add(`${repository(parsed.name)}:${tag}`);
    else
      input.onWarning(
        `${target.reference}: an archive holds one image; the signed provenance (${tag}) is not in it`,
      );
  }
  for (const reference of references) await input.write(att, reference);
  return [...references];
}
