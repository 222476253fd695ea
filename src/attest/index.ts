/** Supply-chain attestations: the folder's public API (re-exported by src/index.ts). */
export { parseAttestationFlags, attestsAnything, type AttestationFlags } from './options.js';
export {
  attachAttestations,
  BUILDER_ID,
  STRATUM_VERSION,
  type AttachOptions,
  type BuildFacts,
} from './attach.js';
export { imagePurl, type ImageMaterial, type OtherMaterial, type StepRecord } from './provenance.js';
export { sbomScanSettings, type SbomScanSettings } from './scan-args.js';
export { scanImage, scanDirectory, type ScanResult, type FoundPackage, type Distro } from './scan/index.js';
export { spdxDocument, type SpdxInput } from './spdx.js';
export { spdxLicence } from './licence.js';
export { isAttestationEntry, UNKNOWN_PLATFORM } from './storage.js';
export {
  readAttestations,
  type AttestationManifest,
  type ImageAttestations,
  type ReadAttestationsOptions,
  type StoredStatement,
} from './read.js';
export { imageSbom, type ImageSbom } from './sbom.js';
export { verifyAttestations, cosignAttestationReference, type VerifiedAttestation } from './verify.js';
export { loadPublicKey, loadPrivateKey, signEnvelope, verifyEnvelope, pae, type Envelope } from './dsse.js';
export { cosignAttestationTag } from './cosign.js';
export * from './types.js';
