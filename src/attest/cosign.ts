import { storeImage } from '../oci/stored-image.js';
import type { KeyObject } from 'node:crypto';
import type { BlobStore } from '../oci/blob-store.js';
import type { ImageIndexSource, ImageSource } from '../oci/image.js';
import { readAll } from '../oci/verified.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { DSSE_MEDIA_TYPE, signEnvelope, type Envelope } from './dsse.js';
import { isAttestationEntry } from './storage.js';
import { PREDICATE_TYPE_ANNOTATION, type Statement } from './types.js';

/**
 * Signed provenance where cosign looks for attestations (sigstore/cosign pkg/oci/remote): an
 * image tagged `sha256-<hex>.att` beside the image `sha256:<hex>` (in the same repository, the
 * same layout, the same store), one layer per DSSE envelope (`application/vnd.dsse.envelope.v1+json`,
 * annotated `predicateType` and an empty `dev.cosignproject.cosign/signature`), on the empty
 * image go-containerregistry makes (cosign's empty.Signatures). `cosign verify-attestation
 * --key KEY.pub --insecure-ignore-tlog` checks the signature and that a subject of the
 * statement is the image's digest: each signed statement therefore names the top-level digest
 * (the index a build with attestations writes) besides its platform's manifest.
 */

export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const ZERO_TIME = '0001-01-01T00:00:00Z';

/** `sha256:abc` → `sha256-abc.att`, cosign's attestation tag. */
export function cosignAttestationTag(digest: string): string {
  return `${digest.replace(':', '-')}.att`;
}

/** The provenance statements of an attested index, re-subjected to the index and signed. */
export async function signProvenance(index: ImageIndexSource, key: KeyObject): Promise<Envelope[]> {
  const [algorithm, hex] = index.descriptor.digest.split(':') as [string, string];
  const envelopes: Envelope[] = [];
  for (const image of index.images) {
    if (!isAttestationEntry(image.descriptor)) continue;
    for (const layer of image.manifest.value.layers) {
      if (!(layer.annotations?.[PREDICATE_TYPE_ANNOTATION] ?? '').startsWith('https://slsa.dev/provenance/'))
        continue;
      const statement = JSON.parse(
        (await readAll(await image.openBlob(layer))).toString('utf8'),
      ) as Statement;
      const signed: Statement = {
        ...statement,
        subject: [...statement.subject, { name: 'index', digest: { [algorithm]: hex } }],
      };
      envelopes.push(signEnvelope(Buffer.from(JSON.stringify(signed)), key));
    }
  }
  return envelopes;
}

/** The `.att` image holding the envelopes, its blobs in `blobs`. */
export async function cosignAttestationImage(
  envelopes: readonly Envelope[],
  blobs: BlobStore,
  name: string,
): Promise<ImageSource> {
  const layers: Descriptor[] = [];
  for (const envelope of envelopes) {
    const bytes = Buffer.from(JSON.stringify(envelope));
    const info = await blobs.putBytes(bytes);
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Statement;
    layers.push({
      mediaType: DSSE_MEDIA_TYPE,
      digest: info.digest,
      size: info.size,
      annotations: { [COSIGN_SIGNATURE_ANNOTATION]: '', predicateType: statement.predicateType },
    });
  }
  // go-containerregistry's empty image, with one history entry per appended layer.
  const config: ImageConfig = {
    created: ZERO_TIME,
    architecture: '',
    os: '',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
    history: layers.map(() => ({ created: ZERO_TIME })),
  };
  return storeImage(blobs, { name, config, layers });
}
