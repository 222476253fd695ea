import { digestAlgorithm, digestHex } from '../oci/digest.js';
import type { ImageSource } from '../oci/image.js';
import { serializeIndex } from '../oci/json.js';
import { REF_NAME } from '../oci/layout-reader.js';
import { MediaType, type Descriptor } from '../oci/types.js';
import { writeAtomically } from './atomic.js';
import { manifestDescriptor, type LayoutWriteOptions, type WriteResult } from './layout-writer.js';
import { TarFileWriter } from './tar-out.js';

/**
 * Writes an image as `oci-archive:FILE[:TAG]`: an OCI image layout packed as one uncompressed
 * tar, streamed straight from the source's blobs (each verified) into a temporary file next to
 * FILE that is renamed over it when complete. As with skopeo, the archive holds just this image:
 * an existing FILE is replaced, not merged into.
 *
 * Member order: `oci-layout`, `index.json`, `blobs/`, `blobs/<alg>/`, then the config, the
 * layers in manifest order (each digest once) and the manifest; all with the image's `created`
 * time (or the epoch) as mtime, so one image always gives one archive byte for byte.
 */

export function archiveTime(source: ImageSource): Date {
  const created = source.config.value.created;
  const time = created === undefined ? Number.NaN : Date.parse(created);
  return Number.isNaN(time) ? new Date(0) : new Date(Math.floor(time / 1000) * 1000);
}

export async function writeOciArchive(
  source: ImageSource,
  file: string,
  tag: string | undefined,
  options: LayoutWriteOptions = {},
): Promise<WriteResult> {
  const descriptor = manifestDescriptor(source);
  const entry: Descriptor =
    tag === undefined ? descriptor : { ...descriptor, annotations: { [REF_NAME]: tag } };
  const index = serializeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [entry] });
  const manifest = source.manifest.value;
  const blobs = new Map<string, Descriptor>();
  for (const blob of [manifest.config, ...manifest.layers]) blobs.set(blob.digest, blob);

  await writeAtomically(file, async (temporary) => {
    const out = new TarFileWriter(temporary, archiveTime(source));
    try {
      await out.buffer('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
      await out.buffer('index.json', index);
      await out.directory('blobs/');
      const algorithms = new Set([...blobs.values(), descriptor].map((blob) => digestAlgorithm(blob.digest)));
      for (const algorithm of algorithms) await out.directory(`blobs/${algorithm}/`);
      for (const blob of blobs.values()) {
        options.signal?.throwIfAborted();
        const path = `blobs/${digestAlgorithm(blob.digest)}/${digestHex(blob.digest)}`;
        await out.stream(path, blob.size, await source.openBlob(blob, options.signal), options.signal);
      }
      await out.buffer(
        `blobs/${digestAlgorithm(descriptor.digest)}/${digestHex(descriptor.digest)}`,
        source.manifest.raw,
      );
      await out.finish();
    } catch (error) {
      await out.abort(error);
      throw error;
    }
  });
  return { digest: descriptor.digest, descriptor };
}
