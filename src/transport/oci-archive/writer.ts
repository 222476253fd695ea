import { digestAlgorithm, digestHex } from '../../oci/digest.js';
import { isImageIndex, type AnyImage, type ImageSource } from '../../oci/image.js';
import { serializeIndex } from '../../oci/json.js';
import { REF_NAME } from '../layout/reader.js';
import { MediaType, type Descriptor } from '../../oci/types.js';
import { writeOutput } from '../../util/atomic-file.js';
import { manifestDescriptor, type LayoutWriteOptions, type WriteResult } from '../layout/writer.js';
import { TarFileWriter } from '../tar-out.js';

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
  source: AnyImage,
  file: string,
  tag: string | undefined,
  options: LayoutWriteOptions = {},
): Promise<WriteResult> {
  const descriptor = manifestDescriptor(source);
  const entry: Descriptor =
    tag === undefined ? descriptor : { ...descriptor, annotations: { [REF_NAME]: tag } };
  const index = serializeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [entry] });
  // A multi-platform image: every platform's blobs and manifest, then the image index.
  const images: readonly ImageSource[] = isImageIndex(source) ? source.images : [source];
  const documents: { readonly descriptor: Descriptor; readonly raw: Buffer }[] = images.map((image) => ({
    descriptor: image.descriptor,
    raw: image.manifest.raw,
  }));
  if (isImageIndex(source)) documents.push({ descriptor, raw: source.index.raw });
  const blobs = new Map<string, { readonly blob: Descriptor; readonly image: ImageSource }>();
  for (const image of images) {
    const manifest = image.manifest.value;
    for (const blob of [manifest.config, ...manifest.layers]) blobs.set(blob.digest, { blob, image });
  }
  const first = images[0]!;

  await writeOutput(
    file,
    async (temporary) => {
      const out = new TarFileWriter(temporary, archiveTime(first));
      try {
        await out.buffer('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
        await out.buffer('index.json', index);
        await out.directory('blobs/');
        const algorithms = new Set(
          [...[...blobs.values()].map(({ blob }) => blob), ...documents.map((doc) => doc.descriptor)].map(
            (blob) => digestAlgorithm(blob.digest),
          ),
        );
        for (const algorithm of algorithms) await out.directory(`blobs/${algorithm}/`);
        for (const { blob, image } of blobs.values()) {
          options.signal?.throwIfAborted();
          const path = `blobs/${digestAlgorithm(blob.digest)}/${digestHex(blob.digest)}`;
          await out.stream(path, blob.size, await image.openBlob(blob, options.signal), options.signal);
        }
        const written = new Set<string>();
        for (const doc of documents) {
          if (written.has(doc.descriptor.digest)) continue;
          written.add(doc.descriptor.digest);
          await out.buffer(
            `blobs/${digestAlgorithm(doc.descriptor.digest)}/${digestHex(doc.descriptor.digest)}`,
            doc.raw,
          );
        }
        await out.finish();
      } catch (error) {
        await out.abort(error);
        throw error;
      }
    },
    { label: `oci-archive:${file}`, ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }) },
  );
  return { digest: descriptor.digest, descriptor };
}
