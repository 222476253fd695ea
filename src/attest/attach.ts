import { createHash, randomUUID } from 'node:crypto';
import type { BlobStore } from '../oci/blob-store.js';
import type { AnyImage, ImageIndexSource, ImageSource } from '../oci/image.js';
import { formatPlatform, hostPlatform, platformMatches } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import {
  imagePurl,
  provenancePredicate,
  provenancePredicateType,
  type ImageMaterial,
  type LayerRecord,
  type OtherMaterial,
  type StepRecord,
} from './provenance.js';
import { scanDirectory, scanImage, type ScanResult } from './scan/index.js';
import { spdxDocument } from './spdx.js';
import { attachStatements, platformImages } from './storage.js';
import {
  IN_TOTO_STATEMENT_V01,
  SPDX_DOCUMENT,
  type AttestationRequest,
  type Statement,
  type Subject,
} from './types.js';

/** stratum's version, as builder.id and the SPDX creator name it (test/attest checks it against package.json). */
export const STRATUM_VERSION = '0.1.0';
export const BUILDER_ID = `pkg:npm/stratum@${STRATUM_VERSION}`;
const TOOL = `stratum-${STRATUM_VERSION}`;

/** What the build knew, for the statements (gathered by src/build.ts as the build ran). */
export interface BuildFacts {
  readonly dockerfile: { readonly name: string; readonly bytes: Buffer };
  readonly buildArgs: Readonly<Record<string, string>>;
  readonly target?: string;
  readonly platformFlag?: string;
  readonly locals: readonly string[];
  readonly secretIds: readonly string[];
  readonly sshIds: readonly string[];
  readonly network: string;
  /** Every image the build opened, with the platform it was opened for. */
  readonly images: readonly ImageMaterial[];
  readonly others: readonly OtherMaterial[];
  /** Steps in the order they ended, with their stage labels (`build (linux/arm64)` in multi-platform builds). */
  readonly steps: readonly StepRecord[];
  readonly startedOn: Date;
  readonly finishedOn: Date;
  /** SOURCE_DATE_EPOCH: the statements' times, and no random invocation id. */
  readonly sourceDateEpoch?: number;
}

export interface AttachOptions {
  readonly request: AttestationRequest;
  readonly facts: BuildFacts;
  readonly blobs: BlobStore;
  /** Names the image goes out under (tags, output names): the statements' subjects. */
  readonly names: readonly string[];
  /** The build's target platforms, in order (to tell a platform's materials from shared ones). */
  readonly targets: readonly Platform[];
  /** BUILDKIT_SBOM_SCAN_CONTEXT: the context directory to scan as well. */
  readonly scanContextDir?: string;
  /** BUILDKIT_SBOM_SCAN_STAGE: other stages' images per target platform, by stage name. */
  readonly stageImages?: (
    platform: Platform,
  ) => Promise<readonly { readonly stage: string; readonly image: ImageSource }[]>;
  readonly signal?: AbortSignal;
}

function rfc3339(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

function subjects(image: ImageSource, names: readonly string[], platform: Platform): Subject[] {
  const [algorithm, hex] = image.manifest.digest.split(':') as [string, string];
  const digest = { [algorithm]: hex };
  // BuildKit's subjects: one per image name, as a purl; `_` when the image has no name.
  if (names.length === 0) return [{ name: '_', digest }];
  return names.map((name) => ({ name: imagePurl(name, platform), digest }));
}

function statement(subject: readonly Subject[], predicateType: string, predicate: unknown): Statement {
  return { _type: IN_TOTO_STATEMENT_V01, predicateType, subject, predicate };
}

function sbomStatement(
  scan: ScanResult,
  name: string,
  root: { purpose: 'CONTAINER' | 'SOURCE'; version?: string; purl?: string },
  layerIds: readonly string[] | undefined,
  created: string,
  subject: readonly Subject[],
): Statement {
  const document = spdxDocument({
    name,
    root,
    scan,
    ...(layerIds === undefined ? {} : { layerIds }),
    created,
    tool: TOOL,
  });
  return statement(subject, SPDX_DOCUMENT, document);
}

/**
 * The build's result with its provenance and SBOM attached: an image index (BuildKit's
 * attestation storage) with one attestation manifest per platform.
 */
export async function attachAttestations(built: AnyImage, options: AttachOptions): Promise<ImageIndexSource> {
  const { request, facts } = options;
  const epoch = facts.sourceDateEpoch === undefined ? undefined : new Date(facts.sourceDateEpoch * 1000);
  const created = rfc3339(epoch ?? facts.finishedOn);
  const contextScan =
    request.sbom !== undefined && options.scanContextDir !== undefined
      ? await scanDirectory(options.scanContextDir, options.signal)
      : undefined;
  const perPlatform = [];
  for (const image of platformImages(built)) {
    const platform = image.descriptor.platform ?? {
      architecture: image.config.value.architecture,
      os: image.config.value.os,
      ...(image.config.value.variant === undefined ? {} : { variant: image.config.value.variant }),
    };
    const subject = subjects(image, options.names, platform);
    const statements: Statement[] = [];
    if (request.sbom !== undefined) {
      const scan = await scanImage(image, options.signal);
      const name = options.names[0] ?? image.manifest.digest;
      statements.push(
        sbomStatement(
          scan,
          name,
          {
            purpose: 'CONTAINER',
            version: image.manifest.digest,
            purl: imagePurl(options.names[0] ?? 'image', platform),
          },
          image.config.value.rootfs.diff_ids,
          created,
          subject,
        ),
      );
      if (contextScan !== undefined)
        statements.push(
          sbomStatement(contextScan, 'context', { purpose: 'SOURCE' }, undefined, created, subject),
        );
      for (const stage of (await options.stageImages?.(platform)) ?? []) {
        const stageScan = await scanImage(stage.image, options.signal);
        statements.push(
          sbomStatement(
            stageScan,
            `stage ${stage.stage}`,
            { purpose: 'CONTAINER', version: stage.image.manifest.digest },
            stage.image.config.value.rootfs.diff_ids,
            created,
            subject,
          ),
        );
      }
    }
    if (request.provenance !== undefined) {
      const multi = options.targets.length > 1;
      const label = ` (${formatPlatform(platform)})`;
      const images = facts.images.filter(
        (material) =>
          material.platform === undefined ||
          platformMatches(platform, material.platform) ||
          !options.targets.some((target) => platformMatches(target, material.platform!)),
      );
      // In a multi-platform build a stage label ends with its platform; shared stages have none.
      const steps = multi
        ? facts.steps.filter(
            (step) =>
              step.stage.endsWith(label) ||
              !options.targets.some((target) => step.stage.endsWith(` (${formatPlatform(target)})`)),
          )
        : facts.steps;
      const invocationId =
        epoch === undefined
          ? randomUUID()
          : createHash('sha256')
              .update(
                JSON.stringify([
                  facts.dockerfile.bytes.toString('base64'),
                  facts.buildArgs,
                  facts.target ?? '',
                  formatPlatform(platform),
                  image.manifest.digest,
                ]),
              )
              .digest('hex')
              .slice(0, 25);
      const predicate = provenancePredicate({
        request: request.provenance,
        builderId: BUILDER_ID,
        dockerfile: facts.dockerfile,
        buildArgs: facts.buildArgs,
        ...(facts.target === undefined ? {} : { target: facts.target }),
        ...(facts.platformFlag === undefined ? {} : { platforms: facts.platformFlag }),
        builderPlatform: hostPlatform(),
        locals: facts.locals,
        secretIds: facts.secretIds,
        sshIds: facts.sshIds,
        images,
        others: facts.others,
        steps,
        layers: layerRecords(image),
        startedOn: rfc3339(epoch ?? facts.startedOn),
        finishedOn: rfc3339(epoch ?? facts.finishedOn),
        invocationId,
        network: facts.network,
      });
      statements.push(statement(subject, provenancePredicateType(request.provenance), predicate));
    }
    perPlatform.push({ image, statements });
  }
  return attachStatements(built, perPlatform, options.blobs, platformImages(built)[0]?.name ?? 'image');
}

/** The image's layers, each with the history entry that made it (non-empty entries, in order). */
function layerRecords(image: ImageSource): LayerRecord[] {
  const made = (image.config.value.history ?? []).filter((entry) => entry.empty_layer !== true);
  return image.manifest.value.layers.map((descriptor, index) => {
    const createdBy = made[index]?.created_by;
    return createdBy === undefined ? { descriptor } : { descriptor, createdBy };
  });
}
