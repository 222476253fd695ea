/** stratum's public API: what the CLI and examples/ use. */
export { StratumError, isStratumError, type ErrorCode } from './errors.js';
export * from './oci/types.js';
export { BlobStore, type BlobInfo } from './oci/blob-store.js';
export { DigestingStream, VerifyingStream, sha256Digest, parseDigest, isDigest } from './oci/digest.js';
