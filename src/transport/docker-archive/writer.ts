import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { StratumError } from '../../errors.js';
import { digestHex } from '../../oci/digest.js';
import type { ImageSource } from '../../oci/image.js';
import { layerBlobCompression, openLayerTar } from '../../oci/layer.js';
import { normalizeImageName } from '../../oci/reference.js';
import { MediaType, type Descriptor, type Digest } from '../../oci/types.js';
import { synthesizeManifest } from './reader.js';
import { temporarySibling, writeOutput } from '../../util/atomic-file.js';
import type { LayoutWriteOptions, WriteResult } from '../layout/writer.js';
import { archiveTime } from '../oci-archive/writer.js';
import { TarFileWriter } from '../tar-out.js';

/**
 * Writes `docker-archive:FILE[:NAME]`, the format `docker save` writes and `docker load` reads,
 * in the classic shape every Docker since 1.10 loads (Docker 20.10 runs here):
 *
 *   <config-hex>.json                 the config, byte for byte (its digest is the image ID)
 *   <diff_id-hex>/layer.tar           each layer UNCOMPRESSED (a layer used twice is stored once)
 *   manifest.json                     [{"Config":…, "RepoTags":[NAME], "Layers":[…]}]
 *   repositories                      {"repo":{"tag":"<top layer dir>"}} for pre-1.10 readers
 *
 * Layers are inflated on the way, and the inflated bytes are checked against the config's
 * diff_ids, so Docker's own check on load cannot fail. A tar header needs the member size
 * first: an uncompressed layer's size is its descriptor's; a compressed one is inflated to a
 * temporary file beside FILE first. The archive is written to a temporary file and renamed
 * over FILE when complete; nothing is left at FILE on failure.
 */

function splitName(name: string): { repository: string; tag: string } {
  const normalized = normalizeImageName(name);
  const colon = normalized.lastIndexOf(':');
  return { repository: normalized.slice(0, colon), tag: normalized.slice(colon + 1) };
}

export async function writeDockerArchive(
  source: ImageSource,
  file: string,
  name: string | undefined,
  options: LayoutWriteOptions = {},
): Promise<WriteResult> {
  if (name !== undefined && (name.includes('@') || name.startsWith('@'))) {
    throw new StratumError(
      'USAGE',
      `docker-archive:${file}:${name}: a docker archive is tagged with NAME:TAG, not a digest or @N`,
    );
  }
  const layers = source.manifest.value.layers;
  const diffIds = source.config.value.rootfs.diff_ids;
  if (layers.length !== diffIds.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${source.name}: manifest ${source.manifest.digest} has ${layers.length} layers but its config has ${diffIds.length} diff_ids`,
    );
  }
  const configName = `${digestHex(source.config.digest)}.json`;
  const layerNames = diffIds.map((diffId) => `${digestHex(diffId)}/layer.tar`);
  const repoTags = name === undefined ? [] : [normalizeImageName(name)];
  const manifestJson = JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layerNames }]);
  const repositories: Record<string, Record<string, string>> = {};
  const top = diffIds[diffIds.length - 1];
  if (name !== undefined && top !== undefined) {
    const { repository, tag } = splitName(name);
    repositories[repository] = { [tag]: digestHex(top) };
  }

  const sizes = new Map<Digest, number>();
  const tarLayers: Descriptor[] = [];
  await writeOutput(
    file,
    async (temporary) => {
      const out = new TarFileWriter(temporary, archiveTime(source));
      // Beside the temporary: the destination may be a FIFO, whose directory is no place for it.
      const scratch = temporarySibling(temporary);
      try {
        await out.buffer(configName, source.config.raw);
        for (const [index, layer] of layers.entries()) {
          const diffId = diffIds[index]!;
          const already = sizes.get(diffId);
          if (already !== undefined) {
            tarLayers.push({ mediaType: MediaType.ociLayer, digest: diffId, size: already });
            continue;
          }
          options.signal?.throwIfAborted();
          await out.directory(`${digestHex(diffId)}/`);
          const tarOptions = { diffId, ...(options.signal ? { signal: options.signal } : {}) };
          const compression = await layerBlobCompression(source, layer, options.signal);
          let size = layer.size;
          if (compression === 'none') {
            await out.stream(
              layerNames[index]!,
              size,
              await openLayerTar(source, layer, tarOptions),
              options.signal,
            );
          } else {
            try {
              await pipeline(
                await openLayerTar(source, layer, tarOptions),
                createWriteStream(scratch, { flags: 'wx' }),
              );
              size = (await stat(scratch)).size;
              await out.stream(layerNames[index]!, size, createReadStream(scratch), options.signal);
            } finally {
              await rm(scratch, { force: true });
            }
          }
          sizes.set(diffId, size);
          tarLayers.push({ mediaType: MediaType.ociLayer, digest: diffId, size });
        }
        await out.buffer('manifest.json', Buffer.from(manifestJson));
        if (Object.keys(repositories).length > 0)
          await out.buffer('repositories', Buffer.from(JSON.stringify(repositories)));
        await out.finish();
      } catch (error) {
        await out.abort(error);
        await rm(scratch, { force: true });
        throw error;
      }
    },
    { label: `docker-archive:${file}`, ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }) },
  );
  // The archive holds no manifest; report the one every reader of it derives (see synthesizeManifest).
  const manifest = synthesizeManifest(
    { digest: source.config.digest, size: source.config.raw.length },
    tarLayers,
  );
  const descriptor: Descriptor = {
    mediaType: MediaType.ociManifest,
    digest: manifest.digest,
    size: manifest.raw.length,
  };
  return {
    digest: descriptor.digest,
    descriptor,
    rewritten:
      'a docker-archive holds no manifest and stores its layers uncompressed; this is the manifest a reader of it derives',
  };
}
