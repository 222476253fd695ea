import type { Digest } from '../oci/types.js';
import type { RegistryClient } from './client.js';

/** One repository of one registry, as the manifest and blob modules see it (RepositoryClient is one). */
export interface RepositoryScope {
  readonly client: RegistryClient;
  readonly registry: string;
  readonly repository: string;
  /** `host/repository`, for messages. */
  readonly name: string;
  /** How errors name this repository (the reference the user typed). */
  readonly label: string;
  pullScope(): string[];
  pushScope(): string[];
  /** `docker://host/repo:tag` or `…@digest`, for messages about one manifest. */
  refLabel(reference: string): string;
  blobExists(digest: Digest, options?: { readonly signal?: AbortSignal }): Promise<number | undefined>;
}
