import { BlobLocations } from './blob-locations.js';
import { Secrets } from './registry-error.js';

/**
 * What the registry clients of one job share: where each blob was seen (mount candidates across
 * repositories) and the secrets to blank out of messages. A build makes one and hands it to the
 * clients of FROM, --push and the shared cache; a client made without one gets its own.
 */
export class RegistryContext {
  readonly blobs = new BlobLocations();
  readonly secrets = new Secrets();
}
