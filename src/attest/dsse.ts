import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { StratumError } from '../errors.js';

/**
 * DSSE envelopes (github.com/secure-systems-lab/dsse, envelope.md and protocol.md), as cosign
 * stores attestations: the statement is the payload, signed over the pre-authentication
 * encoding `DSSEv1 <len(type)> <type> <len(body)> <body>`. Keys are plain PEM (PKCS#8, SEC1 or
 * PKIX for the public half): ECDSA P-256 with SHA-256 (cosign's default; the signature is
 * ASN.1 DER, as cosign writes it) or Ed25519. cosign's own encrypted key file is not read: make a
 * key with `openssl ecparam -genkey -name prime256v1 -noout -out key.pem` and its public half
 * with `openssl ec -in key.pem -pubout -out key.pub`, which `cosign verify-attestation --key`
 * takes as well.
 */

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';

export interface Envelope {
  readonly payloadType: string;
  /** base64 (standard alphabet, padded) */
  readonly payload: string;
  readonly signatures: readonly { readonly keyid: string; readonly sig: string }[];
}

export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'utf8'),
    type,
    Buffer.from(` ${payload.length} `, 'utf8'),
    payload,
  ]);
}

/** SHA-256 for ECDSA keys; Ed25519 hashes as it signs (Node takes no digest for it). */
function digestFor(key: KeyObject, what: string): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    return 'sha256';
  throw new StratumError(
    'UNSUPPORTED',
    `${what}: a ${key.asymmetricKeyType ?? 'unknown'} key${key.asymmetricKeyDetails?.namedCurve === undefined ? '' : ` on ${key.asymmetricKeyDetails.namedCurve}`}; use ECDSA P-256 (cosign's default) or Ed25519`,
  );
}

export function loadPrivateKey(pem: Buffer, what: string): KeyObject {
  if (pem.includes('ENCRYPTED SIGSTORE PRIVATE KEY') || pem.includes('ENCRYPTED COSIGN PRIVATE KEY'))
    throw new StratumError(
      'UNSUPPORTED',
      `${what}: cosign's encrypted key file is not read; give an unencrypted PEM key (openssl ecparam -genkey -name prime256v1 -noout)`,
    );
  try {
    const key = createPrivateKey(pem);
    digestFor(key, what);
    return key;
  } catch (error) {
    if (error instanceof StratumError) throw error;
    throw new StratumError('USAGE', `${what}: not a PEM private key (${(error as Error).message})`);
  }
}

export function loadPublicKey(pem: Buffer, what: string): KeyObject {
  try {
    const key = createPublicKey(pem);
    digestFor(key, what);
    return key;
  } catch (error) {
    if (error instanceof StratumError) throw error;
    throw new StratumError('USAGE', `${what}: not a PEM public key (${(error as Error).message})`);
  }
}

export function signEnvelope(payload: Buffer, key: KeyObject, payloadType = IN_TOTO_PAYLOAD_TYPE): Envelope {
  const signature = sign(digestFor(key, 'signing key'), pae(payloadType, payload), key);
  return {
    payloadType,
    payload: payload.toString('base64'),
    signatures: [{ keyid: '', sig: signature.toString('base64') }],
  };
}

/** The payload when one of the envelope's signatures verifies with `key`; undefined otherwise. */
export function verifyEnvelope(envelope: Envelope, key: KeyObject): Buffer | undefined {
  const payload = Buffer.from(envelope.payload, 'base64');
  const message = pae(envelope.payloadType, payload);
  for (const signature of envelope.signatures) {
    if (verify(digestFor(key, 'verification key'), message, key, Buffer.from(signature.sig, 'base64')))
      return payload;
  }
  return undefined;
}
