import type { ImageSource } from '../oci/image.js';
import { imagePurl } from './provenance.js';
import type { ImageAttestations } from './read.js';
import { scanImage } from './scan/index.js';
import { spdxDocument } from './spdx.js';
import { SPDX_DOCUMENT, type SpdxDocument } from './types.js';
import { STRATUM_VERSION } from './attach.js';

/**
 * The SBOM of any image (`stratum sbom`): the SPDX documents its attestations hold for it, or,
 * when it has none (an image built without --sbom, by another tool, pulled from anywhere), an
 * SPDX document made now by scanning its filesystem.
 */
export interface ImageSbom {
  readonly source: 'attestation' | 'scan';
  /** The attached documents (the image's own first), or the one the scan made. */
  readonly documents: readonly SpdxDocument[];
}

export async function imageSbom(
  image: ImageSource,
  attestations: ImageAttestations,
  options: { readonly name?: string; readonly signal?: AbortSignal } = {},
): Promise<ImageSbom> {
  const attached = attestations.manifests
    .filter((manifest) => manifest.subject === image.manifest.digest)
    .flatMap((manifest) => manifest.statements)
    .filter((statement) => statement.predicateType === SPDX_DOCUMENT && statement.statement !== undefined)
    .map((statement) => statement.statement!.predicate as SpdxDocument);
  if (attached.length > 0) return { source: 'attestation', documents: attached };
  const scan = await scanImage(image, options.signal);
  const config = image.config.value;
  const name = options.name ?? image.name;
  const created = config.created === undefined ? new Date(0) : new Date(config.created);
  const document = spdxDocument({
    name,
    root: {
      purpose: 'CONTAINER',
      version: image.manifest.digest,
      purl: imagePurl(name.includes(':/') || name.startsWith('oci') ? name : name, {
        architecture: config.architecture,
        os: config.os,
        ...(config.variant === undefined ? {} : { variant: config.variant }),
      }),
    },
    scan,
    layerIds: config.rootfs.diff_ids,
    // The image's own time: the same image gives the same document.
    created: `${(Number.isNaN(created.getTime()) ? new Date(0) : created).toISOString().slice(0, 19)}Z`,
    tool: `stratum-${STRATUM_VERSION}`,
  });
  return { source: 'scan', documents: [document] };
}
