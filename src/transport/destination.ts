import { resolve } from 'node:path';
import { StratumError } from '../errors.js';
import type { ImageReference } from '../oci/image.js';
import { checkOutput } from '../util/output-path.js';
import { formatImageReference } from '../oci/reference.js';
import { directoryState } from './layout/writer.js';

/**
 * Checks, before a build starts, that an image destination can be written (oci/output-path.ts:
 * kernel filesystems, a parent that is a file, a read-only or unwritable directory, what may
 * stand at the path), and that a directory given for a layout is one. Writes nothing.
 */
export async function checkDestination(reference: ImageReference): Promise<void> {
  const label = formatImageReference(reference);
  switch (reference.transport) {
    case 'oci': {
      const dir = resolve(reference.path);
      const plan = await checkOutput(dir, 'directory', { label, createParents: true });
      if (plan === 'into-directory' && (await directoryState(dir)) === 'other') {
        throw new StratumError(
          'IO',
          `${label}: ${dir} exists and is not an OCI image layout (no oci-layout file); refusing to write into it`,
        );
      }
      return;
    }
    case 'oci-archive':
    case 'docker-archive':
      await checkOutput(resolve(reference.path), 'file', { label });
      return;
    case 'store':
    case 'docker':
    case 'docker-daemon':
      return; // names, checked when parsed; the store's directory is stratum's own
  }
}
