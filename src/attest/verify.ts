import type { KeyObject } from 'node:crypto';
import { StratumError } from '../errors.js';
import { parseImageReference } from '../oci/reference.js';
import type { ImageManifest } from '../oci/types.js';
import { parseRegistryReference } from '../registry/index.js';
import { cosignAttestationTag } from './cosign.js';
import { DSSE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE, verifyEnvelope, type Envelope } from './dsse.js';
import { openDocuments, type ReadAttestationsOptions } from './read.js';
import type { Statement } from './types.js';

/**
 * `stratum verify-attestation`: the signed attestations cosign's layout keeps beside an image
 * (the `sha256-<hex>.att` tag in the same layout, store or repository), each envelope's
 * signature checked with a public key and its statement required to name the image's digest,
 * as `cosign verify-attestation --key KEY --insecure-ignore-tlog` does. Offline: nothing but the
 * image's own place is read (no transparency log, no certificate authority).
 */

export interface VerifiedAttestation {
  readonly predicateType: string;
  /** The envelope's blob. */
  readonly digest: string;
  readonly statement: Statement;
}

/** Where cosign keeps the attestations of the image `digest` that `reference` names. */
export function cosignAttestationReference(reference: string, digest: string): string {
  const parsed = parseImageReference(reference);
  const tag = cosignAttestationTag(digest);
  switch (parsed.transport) {
    case 'oci':
      return `oci:${parsed.path}:${tag}`;
    case 'store': {
      const ref = parseRegistryReference(parsed.name);
      return `${ref.registry}/${ref.repository}:${tag}`;
    }
    case 'docker': {
      const ref = parseRegistryReference(parsed.reference);
      return `docker://${ref.registry}/${ref.repository}:${tag}`;
    }
    case 'oci-archive':
    case 'docker-archive':
    case 'docker-daemon':
      throw new StratumError(
        'UNSUPPORTED',
        `${reference}: holds one image, not the signed attestations beside it (use oci:DIR, the store or a registry)`,
      );
  }
}

export async function verifyAttestations(
  reference: string,
  key: KeyObject,
  options: ReadAttestationsOptions = {},
): Promise<{
  readonly digest: string;
  readonly verified: readonly VerifiedAttestation[];
  readonly rejected: number;
}> {
  const image = await openDocuments(reference, options);
  if (image === undefined)
    throw new StratumError('UNSUPPORTED', `${reference}: holds no signed attestations`);
  const digest = image.root.digest;
  await image.close();
  const attReference = cosignAttestationReference(reference, digest);
  let documents;
  try {
    documents = await openDocuments(attReference, options);
  } catch (error) {
    if (error instanceof StratumError && (error.code === 'NOT_FOUND' || error.code === 'REGISTRY'))
      throw new StratumError(
        'NOT_FOUND',
        `${reference}: no signed attestations (${attReference}: ${error.detail})`,
      );
    throw error;
  }
  if (documents === undefined) throw new StratumError('NOT_FOUND', `${reference}: no signed attestations`);
  const verified: VerifiedAttestation[] = [];
  let rejected = 0;
  try {
    const manifest = JSON.parse((await documents.read(documents.root)).toString('utf8')) as ImageManifest;
    for (const layer of manifest.layers) {
      if (layer.mediaType !== DSSE_MEDIA_TYPE) continue;
      const envelope = JSON.parse((await documents.read(layer)).toString('utf8')) as Envelope;
      const payload =
        envelope.payloadType === IN_TOTO_PAYLOAD_TYPE ? verifyEnvelope(envelope, key) : undefined;
      const statement =
        payload === undefined ? undefined : (JSON.parse(payload.toString('utf8')) as Statement);
      const names = statement?.subject.some(
        (subject) => `sha256:${subject.digest['sha256'] ?? ''}` === digest,
      );
      if (statement === undefined || names !== true) {
        rejected++;
        continue;
      }
      verified.push({ predicateType: statement.predicateType, digest: layer.digest, statement });
    }
  } finally {
    await documents.close();
  }
  return { digest, verified, rejected };
}
