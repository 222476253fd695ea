import { StratumError } from '../errors.js';
import { directoryAccess, type FileAccess } from '../transport/files.js';
import { chooseEntry, layoutBlobs, readLayoutIndex } from '../transport/layout/reader.js';
import { isIndexMediaType, isManifestMediaType } from '../oci/media-types.js';
import { parseImageReference } from '../oci/reference.js';
import { openArchive } from '../transport/archive-file.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../oci/types.js';
import { readAll } from '../oci/verified.js';
import { ImageStore } from '../transport/store/store.js';
import { RegistryClient, RepositoryClient, parseRegistryReference } from '../registry/index.js';
import { referenceLabel } from '../registry/repository.js';
import { isAttestationEntry } from './storage.js';
import {
  IN_TOTO_MEDIA_TYPE,
  PREDICATE_TYPE_ANNOTATION,
  REFERENCE_DIGEST_ANNOTATION,
  type Statement,
} from './types.js';

/**
 * Reads the attestations stored beside an image (BuildKit's attestation storage, either form:
 * the image-config form every released BuildKit writes and the OCI-artifact form of newer ones),
 * from any transport that can hold an index: an OCI layout or archive, the local store, a
 * registry. A docker-archive or the Docker daemon holds none.
 */

export interface StoredStatement {
  readonly predicateType: string;
  readonly digest: string;
  readonly size: number;
  /** The statement, when asked for (`withStatements`). */
  readonly statement?: Statement;
}

export interface AttestationManifest {
  /** The attestation manifest's digest. */
  readonly digest: string;
  /** The image manifest it is about (`vnd.docker.reference.digest`). */
  readonly subject: string;
  readonly statements: readonly StoredStatement[];
}

export interface ImageAttestations {
  /** The index the image is in; undefined when the reference names a lone manifest. */
  readonly index?: string;
  readonly manifests: readonly AttestationManifest[];
}

export interface ReadAttestationsOptions {
  readonly dataDir?: string;
  readonly insecureRegistries?: readonly string[];
  readonly tmpDir?: string;
  readonly signal?: AbortSignal;
  /** Read each statement's content too (default: only the manifests' layer lists). */
  readonly withStatements?: boolean;
}

/** Documents of one transport, read by descriptor and verified. */
export interface Documents {
  readonly root: Descriptor;
  read(descriptor: Descriptor): Promise<Buffer>;
  close(): Promise<void>;
}

async function layoutDocuments(
  access: FileAccess,
  name: string,
  tag: string | undefined,
  close: () => Promise<void>,
  entry?: Descriptor,
): Promise<Documents> {
  const root = entry ?? chooseEntry((await readLayoutIndex(access, name)).value, tag, name);
  const blobs = layoutBlobs(access, name);
  return {
    root,
    read: async (descriptor) => readAll(await blobs.open(descriptor, 'blob')),
    close,
  };
}

/** The documents behind `reference` (undefined for a docker-archive or the daemon, which hold no index). */
export async function openDocuments(
  reference: string,
  options: ReadAttestationsOptions,
): Promise<Documents | undefined> {
  const parsed = parseImageReference(reference);
  const none = (): Promise<void> => Promise.resolve();
  switch (parsed.transport) {
    case 'oci':
      return layoutDocuments(directoryAccess(parsed.path), reference, parsed.tag, none);
    case 'oci-archive': {
      const archive = await openArchive(parsed.path, reference, options.signal, options.tmpDir);
      try {
        return await layoutDocuments(archive.access, reference, parsed.tag, archive.close);
      } catch (error) {
        await archive.close();
        throw error;
      }
    }
    case 'store': {
      const store = new ImageStore(options.dataDir);
      const entry = await store.resolve(parsed.name);
      // A name the store lacks is looked up in its registry, as openImage does.
      if (entry !== undefined)
        return layoutDocuments(directoryAccess(store.root), reference, undefined, none, entry);
      return registryDocuments(parsed.name, options);
    }
    case 'docker':
      return registryDocuments(parsed.reference, options);
    case 'docker-archive':
    case 'docker-daemon':
      return undefined;
  }
}

async function registryDocuments(reference: string, options: ReadAttestationsOptions): Promise<Documents> {
  const ref = parseRegistryReference(reference);
  const client = new RegistryClient({
    ...(options.insecureRegistries === undefined ? {} : { insecureRegistries: options.insecureRegistries }),
  });
  try {
    const repo = new RepositoryClient(client, ref.registry, ref.repository, referenceLabel(ref));
    const signal = options.signal ? { signal: options.signal } : {};
    const top = await repo.getManifest(ref.digest ?? ref.tag ?? 'latest', signal);
    return {
      root: { mediaType: top.mediaType, digest: top.digest, size: top.size },
      read: async (descriptor) =>
        isIndexMediaType(descriptor.mediaType) || isManifestMediaType(descriptor.mediaType)
          ? (await repo.getManifest(descriptor.digest, signal)).bytes
          : readAll(repo.fetchBlob(descriptor.digest, { size: descriptor.size, ...signal })),
      close: () => client.close(),
    };
  } catch (error) {
    await client.close();
    throw error;
  }
}

function json(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new StratumError('INVALID_IMAGE', `${what}: not valid JSON`);
  }
}

/** Every attestation manifest of the image `reference` names (none for a lone manifest). */
export async function readAttestations(
  reference: string,
  options: ReadAttestationsOptions = {},
): Promise<ImageAttestations> {
  const documents = await openDocuments(reference, options);
  if (documents === undefined) return { manifests: [] };
  try {
    const root = documents.root;
    if (!isIndexMediaType(root.mediaType)) {
      const bytes = await documents.read(root);
      const document = json(bytes, `${reference}: ${root.digest}`) as { manifests?: unknown };
      if (!Array.isArray(document.manifests)) return { manifests: [] };
    }
    const index = json(await documents.read(root), `${reference}: index ${root.digest}`) as ImageIndex;
    const manifests: AttestationManifest[] = [];
    for (const entry of index.manifests) {
      if (!isAttestationEntry(entry)) continue;
      const manifest = json(
        await documents.read(entry),
        `${reference}: attestation manifest ${entry.digest}`,
      ) as ImageManifest;
      const statements: StoredStatement[] = [];
      for (const layer of manifest.layers) {
        if (layer.mediaType !== IN_TOTO_MEDIA_TYPE) continue; // unknown media types are ignored (the spec)
        const predicateType = layer.annotations?.[PREDICATE_TYPE_ANNOTATION] ?? '';
        const statement =
          options.withStatements === true
            ? (json(await documents.read(layer), `${reference}: statement ${layer.digest}`) as Statement)
            : undefined;
        statements.push({
          predicateType:
            predicateType === '' && statement !== undefined ? statement.predicateType : predicateType,
          digest: layer.digest,
          size: layer.size,
          ...(statement === undefined ? {} : { statement }),
        });
      }
      manifests.push({
        digest: entry.digest,
        subject: entry.annotations?.[REFERENCE_DIGEST_ANNOTATION] ?? manifest.subject?.digest ?? '',
        statements,
      });
    }
    return { index: root.digest, manifests };
  } finally {
    await documents.close();
  }
}
