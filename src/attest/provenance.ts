import { createHash } from 'node:crypto';
import { PackageURL } from 'packageurl-js';
import { parseImageReference } from '../oci/reference.js';
import { formatPlatform, normalizePlatform } from '../oci/platform.js';
import type { Descriptor, Platform } from '../oci/types.js';
import { familiarReference, parseRegistryReference } from '../registry/reference.js';
import type { DigestSet, ProvenanceRequest } from './types.js';
import { SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1 } from './types.js';

/**
 * SLSA provenance for one platform's image, in BuildKit's shapes (solver/llbsolver/provenance
 * and docs/attestations/slsa-definitions.md), so tools that read BuildKit's provenance (docker
 * scout, `buildx imagetools inspect --format '{{json .Provenance}}'`) read stratum's:
 * - v0.2 (`https://slsa.dev/provenance/v0.2`, the default) with BuildKit's build type
 *   `https://mobyproject.org/buildkit@v1`; v1 (`version=v1`) with its v1 build type;
 * - invocation / externalParameters: the Dockerfile (entry point and digest), the frontend
 *   `dockerfile.v0`, args as BuildKit spells them (`build-arg:NAME`, `target`, `platform`),
 *   locals (`context`, `dockerfile`, directory build contexts), secret and ssh ids;
 * - materials / resolvedDependencies: every image the build read, by digest, as purls
 *   (`pkg:docker/debian@12?platform=linux%2Famd64`), then ADD URLs and git sources when known;
 * - mode=min leaves out build-arg values (and marks the parameters incomplete), secret and ssh
 *   ids, the Dockerfile source and the steps, as BuildKit's scrubMinRequest does; mode=max has
 *   them all. Secret *values* are never anywhere.
 * builder.id is stratum's own (`builder-id=` overrides it). Under SOURCE_DATE_EPOCH the times
 * are that epoch and the invocation id is a digest of the build's inputs, so the statement,
 * like the image, is the same every time.
 */

export const BUILD_TYPE_V02 = 'https://mobyproject.org/buildkit@v1';
export const BUILD_TYPE_V1 =
  'https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md';

/** An image the build read (FROM, COPY --from, RUN --mount=from, --build-context). */
export interface ImageMaterial {
  /** As the Dockerfile or --build-context named it, resolved to a transport reference. */
  readonly reference: string;
  /** What the reference resolved to: the index when it named one, else the manifest. */
  readonly digest: string;
  readonly platform?: Platform;
}

export interface OtherMaterial {
  readonly uri: string;
  readonly digest: DigestSet;
}

/**
 * One step as the build reported it (mode=max). Whether it hit the cache and which layer it
 * made are not recorded per step: a cache hit reports no layer, and the same image must give
 * the same provenance whatever the cache held. The image's layers are listed apart, with the
 * history entry that made each.
 */
export interface StepRecord {
  readonly stage: string;
  readonly instruction: string;
  readonly file: string;
  readonly line: number;
}

/** A layer of the image and the history entry (`created_by`) that made it. */
export interface LayerRecord {
  readonly descriptor: Descriptor;
  readonly createdBy?: string;
}

export interface ProvenanceInput {
  readonly request: ProvenanceRequest;
  /** `pkg:npm/stratum@0.1.0` */
  readonly builderId: string;
  readonly dockerfile: { readonly name: string; readonly bytes: Buffer };
  readonly buildArgs: Readonly<Record<string, string>>;
  readonly target?: string;
  /** `--platform` as given (all platforms of the build). */
  readonly platforms?: string;
  readonly builderPlatform: Platform;
  /** Local sources besides context and dockerfile: directory --build-context names. */
  readonly locals: readonly string[];
  readonly secretIds: readonly string[];
  readonly sshIds: readonly string[];
  readonly images: readonly ImageMaterial[];
  readonly others: readonly OtherMaterial[];
  readonly steps: readonly StepRecord[];
  readonly layers: readonly LayerRecord[];
  readonly startedOn: string;
  readonly finishedOn: string;
  readonly invocationId: string;
  /** The network RUN had: anything but `none` makes the build non-hermetic. */
  readonly network: string;
}

function sha256Set(digest: string): DigestSet {
  const colon = digest.indexOf(':');
  return { [digest.slice(0, colon)]: digest.slice(colon + 1) };
}

/** `pkg:docker/NAME@TAG?platform=...` as BuildKit's purl.RefToPURL makes it, or `pkg:oci/...` for a layout. */
export function imagePurl(reference: string, platform: Platform | undefined): string {
  const qualifiers: Record<string, string> = {};
  let type = 'docker';
  let namespace: string | undefined;
  let name: string;
  let version: string | undefined;
  const parsed = parseImageReference(reference);
  if (parsed.transport === 'docker' || parsed.transport === 'store') {
    const ref = parseRegistryReference(parsed.transport === 'docker' ? parsed.reference : parsed.name);
    const familiar = familiarReference({ registry: ref.registry, repository: ref.repository });
    const slash = familiar.lastIndexOf('/');
    namespace = slash > 0 ? familiar.slice(0, slash) : undefined;
    name = slash > 0 ? familiar.slice(slash + 1) : familiar;
    if (ref.digest !== undefined) qualifiers['digest'] = ref.digest;
    version = ref.tag ?? (ref.digest === undefined ? 'latest' : undefined);
  } else if (parsed.transport === 'docker-daemon') {
    const ref = parseRegistryReference(parsed.name);
    name = ref.repository.split('/').pop()!;
    version = ref.tag;
  } else {
    // A layout or archive on this machine: named by its file name, not its path (the path says
    // nothing to whoever reads the provenance elsewhere, and may say too much).
    type = 'oci';
    name =
      parsed.path
        .split('/')
        .filter((part) => part !== '')
        .pop() ?? 'layout';
    version = parsed.tag;
  }
  if (platform !== undefined) qualifiers['platform'] = formatPlatform(normalizePlatform(platform));
  return new PackageURL(type, namespace, name, version, qualifiers, undefined).toString();
}

interface Parameters {
  readonly frontend: string;
  readonly args?: Readonly<Record<string, string>>;
  readonly secrets?: readonly { readonly id: string }[];
  readonly ssh?: readonly { readonly id: string }[];
  readonly locals: readonly { readonly name: string }[];
}

function parameters(input: ProvenanceInput): { readonly parameters: Parameters; readonly complete: boolean } {
  const max = input.request.mode === 'max';
  const args: Record<string, string> = {};
  let complete = true;
  for (const [name, value] of Object.entries(input.buildArgs).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  )) {
    // mode=min: build-arg values can hold anything; they are left out and the record says so.
    if (max) args[`build-arg:${name}`] = value;
    else complete = false;
  }
  if (input.platforms !== undefined) args['platform'] = input.platforms;
  if (input.target !== undefined) args['target'] = input.target;
  return {
    complete,
    parameters: {
      frontend: 'dockerfile.v0',
      ...(Object.keys(args).length === 0 ? {} : { args }),
      ...(max && input.secretIds.length > 0 ? { secrets: input.secretIds.map((id) => ({ id })) } : {}),
      ...(max && input.sshIds.length > 0 ? { ssh: input.sshIds.map((id) => ({ id })) } : {}),
      locals: [{ name: 'context' }, { name: 'dockerfile' }, ...input.locals.map((name) => ({ name }))],
    },
  };
}

function materials(input: ProvenanceInput): { readonly uri: string; readonly digest: DigestSet }[] {
  const seen = new Set<string>();
  const out: { uri: string; digest: DigestSet }[] = [];
  for (const image of input.images) {
    const uri = imagePurl(image.reference, image.platform);
    const key = `${uri}\0${image.digest}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ uri, digest: sha256Set(image.digest) });
  }
  for (const other of input.others) out.push({ uri: other.uri, digest: other.digest });
  return out;
}

/** mode=max: the Dockerfile itself and each step with the layer it made. */
function maxMetadata(input: ProvenanceInput): {
  readonly source: unknown;
  readonly buildConfig: unknown;
} {
  return {
    source: {
      infos: [
        {
          filename: input.dockerfile.name,
          language: 'Dockerfile',
          data: input.dockerfile.bytes.toString('base64'),
        },
      ],
    },
    buildConfig: {
      steps: input.steps.map((step, index) => ({
        id: `step${index}`,
        stage: step.stage,
        instruction: step.instruction,
        location: `${step.file}:${step.line}`,
      })),
      layers: input.layers.map((layer) => ({
        mediaType: layer.descriptor.mediaType,
        digest: layer.descriptor.digest,
        size: layer.descriptor.size,
        ...(layer.createdBy === undefined ? {} : { createdBy: layer.createdBy }),
      })),
    },
  };
}

export function provenancePredicateType(request: ProvenanceRequest): string {
  return request.version === 'v1' ? SLSA_PROVENANCE_V1 : SLSA_PROVENANCE_V02;
}

export function provenancePredicate(input: ProvenanceInput): unknown {
  const { parameters: request, complete } = parameters(input);
  const dockerfileDigest = `sha256:${createHash('sha256').update(input.dockerfile.bytes).digest('hex')}`;
  const deps = materials(input);
  const max = input.request.mode === 'max' ? maxMetadata(input) : undefined;
  const hermetic = input.network === 'none';
  const builderId = input.request.builderId ?? input.builderId;
  // A build always reads its local context, which no digest names: as BuildKit, the materials
  // are then not complete.
  const materialsComplete = false;
  if (input.request.version === 'v1') {
    return {
      buildDefinition: {
        buildType: BUILD_TYPE_V1,
        externalParameters: {
          configSource: { digest: sha256Set(dockerfileDigest), path: input.dockerfile.name },
          request,
        },
        internalParameters: {
          ...(max === undefined ? {} : { buildConfig: max.buildConfig }),
          builderPlatform: formatPlatform(input.builderPlatform),
        },
        resolvedDependencies: deps,
      },
      runDetails: {
        builder: { id: builderId },
        metadata: {
          invocationId: input.invocationId,
          startedOn: input.startedOn,
          finishedOn: input.finishedOn,
          buildkit_metadata: max === undefined ? {} : { source: max.source },
          ...(hermetic ? { buildkit_hermetic: true } : {}),
          buildkit_completeness: { request: complete, resolvedDependencies: materialsComplete },
          ...(input.request.reproducible === true ? { buildkit_reproducible: true } : {}),
        },
      },
    };
  }
  return {
    builder: { id: builderId },
    buildType: BUILD_TYPE_V02,
    materials: deps,
    invocation: {
      configSource: { digest: sha256Set(dockerfileDigest), entryPoint: input.dockerfile.name },
      parameters: request,
      environment: { platform: formatPlatform(input.builderPlatform) },
    },
    ...(max === undefined ? {} : { buildConfig: max.buildConfig }),
    metadata: {
      buildInvocationID: input.invocationId,
      buildStartedOn: input.startedOn,
      buildFinishedOn: input.finishedOn,
      completeness: { parameters: complete, environment: true, materials: materialsComplete },
      reproducible: input.request.reproducible === true,
      'https://mobyproject.org/buildkit@v1#metadata': max === undefined ? {} : { source: max.source },
      ...(hermetic ? { 'https://mobyproject.org/buildkit@v1#hermetic': true } : {}),
    },
  };
}
