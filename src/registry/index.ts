/** The registry client's public API (re-exported by src/index.ts). */
export {
  parseRegistryReference,
  formatReference,
  familiarReference,
  withTag,
  withDigest,
  manifestReference,
  isLoopbackRegistry,
  DOCKER_HUB,
  type RegistryReference,
} from './reference.js';
export { RegistryClient, DEFAULT_RETRY, type RegistryClientOptions, type RetryPolicy } from './client.js';
export {
  RepositoryClient,
  MANIFEST_ACCEPT,
  type BlobBody,
  type FetchedManifest,
  type UploadOptions,
} from './repository.js';
export {
  openRegistryImage,
  pullImage,
  resolveImage,
  storeImageSource,
  type PullOptions,
  type PullProgress,
  type ResolvedImage,
} from './pull.js';
export { pushImage, pushIndex, type PushOptions, type PushProgress, type PushResult } from './push.js';
export { login, logout, normaliseRegistryHost, type LoginOptions } from './login.js';
export {
  authFilePath,
  resolveCredential,
  storeCredential,
  eraseCredential,
  type Credential,
  type AuthFileOptions,
} from './credentials.js';
export { RegistryContext } from './context.js';
export { BlobLocations } from './blob-locations.js';
export { redact, Secrets } from './registry-error.js';
