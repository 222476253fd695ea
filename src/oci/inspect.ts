import { StratumError } from '../errors.js';
import type { ImageSource } from './image.js';
import { formatPlatform } from './platform.js';
import type { ContainerConfig, Digest, History } from './types.js';

/**
 * What `stratum inspect` shows: a plain summary of an image. Layers are zipped with the
 * history entries that made them: the non-empty history entries (empty_layer not true) are,
 * in order, the layers' origins; if their count differs from the layers' count the image is
 * inconsistent and that is an error (Docker and BuildKit never write such images). An image
 * with no history at all is accepted; its layers then have no `createdBy`.
 */

export interface LayerSummary {
  readonly digest: Digest;
  readonly diffId: Digest;
  readonly mediaType: string;
  readonly size: number;
  readonly created?: string;
  readonly createdBy?: string;
  readonly comment?: string;
}

export interface ImageSummary {
  readonly name: string;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly platform: string;
  /** For an image chosen from a multi-platform index: the index's digest and every platform it offers. */
  readonly index?: { readonly digest: Digest; readonly platforms: readonly string[] };
  readonly created?: string;
  readonly author?: string;
  readonly configDigest: Digest;
  readonly config: ContainerConfig;
  /** Manifest, config and layer bytes together (compressed sizes, as stored). */
  readonly size: number;
  readonly layers: readonly LayerSummary[];
  /** History entries that made no layer (ENV, CMD, …). */
  readonly emptyHistory: readonly History[];
}

function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

export function summarizeImage(source: ImageSource): ImageSummary {
  const manifest = source.manifest.value;
  const config = source.config.value;
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${source.name}: manifest ${source.manifest.digest} has ${manifest.layers.length} layers but config ${source.config.digest} has ${diffIds.length} diff_ids`,
    );
  }
  const history = config.history ?? [];
  const made = history.filter((entry) => entry.empty_layer !== true);
  if (history.length > 0 && made.length !== manifest.layers.length) {
    throw new StratumError(
      'INVALID_IMAGE',
      `${source.name}: config ${source.config.digest} has ${made.length} history entries that made a layer, but the manifest has ${manifest.layers.length} layers`,
    );
  }
  const layers = manifest.layers.map((layer, index): LayerSummary => {
    const entry = made[index];
    return {
      digest: layer.digest,
      diffId: diffIds[index]!,
      mediaType: layer.mediaType,
      size: layer.size,
      ...optional('created', entry?.created),
      ...optional('createdBy', entry?.created_by),
      ...optional('comment', entry?.comment),
    };
  });
  const platform = formatPlatform({
    os: config.os,
    architecture: config.architecture,
    ...optional('variant', config.variant),
  });
  return {
    name: source.name,
    digest: source.manifest.digest,
    mediaType: manifest.mediaType ?? source.descriptor.mediaType,
    platform,
    ...optional(
      'index',
      source.chosenFrom === undefined
        ? undefined
        : { digest: source.chosenFrom.digest, platforms: source.chosenFrom.platforms.map(formatPlatform) },
    ),
    ...optional('created', config.created),
    ...optional('author', config.author),
    configDigest: source.config.digest,
    config: config.config ?? {},
    size:
      source.manifest.raw.length +
      manifest.config.size +
      manifest.layers.reduce((sum, layer) => sum + layer.size, 0),
    layers,
    emptyHistory: history.filter((entry) => entry.empty_layer === true),
  };
}
