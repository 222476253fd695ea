import type { Readable } from 'node:stream';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform, Raw } from './types.js';

/**
 * An image as every reader hands it out and every writer takes it in: the manifest and config
 * with their exact bytes, and a way to open any blob the manifest names. Sources are immutable
 * views (go-containerregistry's lesson): changing an image means building a new source.
 */
export interface ImageSource {
  /** Where this image came from, for messages: `oci:/path:tag`, `docker://host/repo:tag`. */
  readonly name: string;
  /** The manifest's descriptor as found (in an index, or made for a bare manifest). */
  readonly descriptor: Descriptor;
  readonly manifest: Raw<ImageManifest>;
  readonly config: Raw<ImageConfig>;
  /**
   * Opens a blob (config or layer) by descriptor. The stream is verified: it errors at its end
   * unless the bytes match the descriptor's digest and size.
   */
  openBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<Readable>;
  /** Frees temporary files (an unpacked archive); safe to call twice. */
  close(): Promise<void>;
  /**
   * For images whose blobs sit in a local content-addressed store that verified them when they
   * were written: the blob's file, so a writer on the same filesystem can hard-link it instead
   * of copying and hashing it again. Undefined when there is no such file.
   */
  readonly localBlobPath?: (descriptor: Descriptor) => string | undefined;
  /**
   * When the manifest was chosen from an image index (a multi-platform image): that index's
   * digest and the platforms it offers, for `inspect`.
   */
  readonly chosenFrom?: { readonly digest: Digest; readonly platforms: readonly Platform[] };
}

/**
 * A multi-platform image: an OCI image index and, for each of its entries, the image it names.
 * Writers store every image's blobs and manifest, then the index bytes exactly as given.
 */
export interface ImageIndexSource {
  readonly name: string;
  /** The index's own descriptor (media type, digest, size). */
  readonly descriptor: Descriptor;
  readonly index: Raw<ImageIndex>;
  /** One image per index entry, in the index's order. */
  readonly images: readonly ImageSource[];
  close(): Promise<void>;
}

/** What a build produces and writers take: one image, or an index of one image per platform. */
export type AnyImage = ImageSource | ImageIndexSource;

export function isImageIndex(image: AnyImage): image is ImageIndexSource {
  return 'images' in image;
}

/**
 * Where an image is read from or written to, in skopeo's transport syntax:
 * `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:TAG]`, `docker://REF`,
 * `docker-daemon:NAME`, and a bare name for stratum's local image store.
 */
export type ImageReference =
  | { readonly transport: 'oci'; readonly path: string; readonly tag?: string }
  | { readonly transport: 'oci-archive'; readonly path: string; readonly tag?: string }
  | { readonly transport: 'docker-archive'; readonly path: string; readonly tag?: string }
  | { readonly transport: 'docker'; readonly reference: string }
  | { readonly transport: 'docker-daemon'; readonly name: string }
  | { readonly transport: 'store'; readonly name: string };

export interface ReadImageOptions {
  /** Platform to choose from an index; default: the host's (`linux/amd64` on x86_64). */
  readonly platform?: Platform;
  readonly signal?: AbortSignal;
  /** Where a compressed archive is inflated; default `$STRATUM_TMPDIR` or the cache's tmp/ (oci/temp-dir.ts). */
  readonly tmpDir?: string;
}

/** A digest-addressed view used when the config's diff_ids and the manifest's layers are zipped. */
export interface LayerRef {
  readonly descriptor: Descriptor;
  readonly diffId: Digest;
}
