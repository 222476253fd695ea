import { sha256Digest } from './digest.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Raw } from './types.js';

/**
 * Deterministic JSON for the documents stratum writes (manifests, indexes, configs, index.json).
 *
 * The canonical form is what Go's encoding/json produces for the image-spec structs, because that
 * is what BuildKit, Docker and containerd write and what people diff against:
 * - struct fields in the Go struct's declaration order (the `Shape`s below), absent fields omitted;
 * - map keys (annotations, Labels, ExposedPorts, Volumes) sorted by UTF-16 code unit, as Go sorts them;
 * - fields a shape does not know (extensions from other tools) kept, after the known ones, sorted;
 * - no whitespace and no trailing newline;
 * - `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c` etc., as Go's HTML-safe encoder does.
 * The same value therefore always gives the same bytes, hence the same digest.
 */
export type Shape =
  | { readonly kind: 'leaf' }
  | { readonly kind: 'struct'; readonly fields: readonly (readonly [string, Shape])[] }
  | { readonly kind: 'map'; readonly of: Shape }
  | { readonly kind: 'array'; readonly of: Shape };

const leaf: Shape = { kind: 'leaf' };
const struct = (...fields: (readonly [string, Shape])[]): Shape => ({ kind: 'struct', fields });
const mapOf = (of: Shape): Shape => ({ kind: 'map', of });
const arrayOf = (of: Shape): Shape => ({ kind: 'array', of });

// image-spec specs-go/v1 Platform
const platformShape = struct(
  ['architecture', leaf],
  ['os', leaf],
  ['os.version', leaf],
  ['os.features', leaf],
  ['variant', leaf],
);

// specs-go/v1 Descriptor
export const descriptorShape: Shape = struct(
  ['mediaType', leaf],
  ['digest', leaf],
  ['size', leaf],
  ['urls', leaf],
  ['annotations', mapOf(leaf)],
  ['data', leaf],
  ['platform', platformShape],
  ['artifactType', leaf],
);

// specs-go/v1 Manifest (Versioned first)
export const manifestShape: Shape = struct(
  ['schemaVersion', leaf],
  ['mediaType', leaf],
  ['artifactType', leaf],
  ['config', descriptorShape],
  ['layers', arrayOf(descriptorShape)],
  ['subject', descriptorShape],
  ['annotations', mapOf(leaf)],
);

// specs-go/v1 Index
export const indexShape: Shape = struct(
  ['schemaVersion', leaf],
  ['mediaType', leaf],
  ['artifactType', leaf],
  ['manifests', arrayOf(descriptorShape)],
  ['subject', descriptorShape],
  ['annotations', mapOf(leaf)],
);

// specs-go/v1 ImageConfig, then BuildKit's DockerOCIImageConfigExt (Healthcheck, OnBuild, Shell)
const containerConfigShape = struct(
  ['User', leaf],
  ['ExposedPorts', mapOf(mapOf(leaf))],
  ['Env', leaf],
  ['Entrypoint', leaf],
  ['Cmd', leaf],
  ['Volumes', mapOf(mapOf(leaf))],
  ['WorkingDir', leaf],
  ['Labels', mapOf(leaf)],
  ['StopSignal', leaf],
  ['ArgsEscaped', leaf],
  [
    'Healthcheck',
    struct(
      ['Test', leaf],
      ['Interval', leaf],
      ['Timeout', leaf],
      ['StartPeriod', leaf],
      ['StartInterval', leaf],
      ['Retries', leaf],
    ),
  ],
  ['OnBuild', leaf],
  ['Shell', leaf],
);

// specs-go/v1 Image (Platform's fields are inlined after author)
export const configShape: Shape = struct(
  ['created', leaf],
  ['author', leaf],
  ['architecture', leaf],
  ['os', leaf],
  ['os.version', leaf],
  ['os.features', leaf],
  ['variant', leaf],
  ['config', containerConfigShape],
  ['rootfs', struct(['type', leaf], ['diff_ids', leaf])],
  [
    'history',
    arrayOf(
      struct(
        ['created', leaf],
        ['created_by', leaf],
        ['author', leaf],
        ['comment', leaf],
        ['empty_layer', leaf],
      ),
    ),
  ],
);

const compareKeys = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const HTML_UNSAFE = /[<>&\u2028\u2029]/g;

function quote(text: string): string {
  return JSON.stringify(text).replace(
    HTML_UNSAFE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/*
 * Written by hand rather than JSON.stringify on a reordered copy: V8 always enumerates
 * integer-like keys ("10", "9") first, which would break Go's sorted map order.
 */
function write(value: unknown, shape: Shape): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'string') return quote(value);
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} is not JSON`);
      return JSON.stringify(value);
    }
    if (typeof value === 'boolean' || value === null) return JSON.stringify(value);
    throw new TypeError(`canonicalJson: a ${typeof value} is not JSON`);
  }
  if (Array.isArray(value)) {
    const itemShape = shape.kind === 'array' ? shape.of : leaf;
    return `[${value.map((item: unknown) => write(item, itemShape)).join(',')}]`;
  }
  const record = value as Record<string, unknown>;
  const members: string[] = [];
  const add = (name: string, fieldShape: Shape): void => {
    if (record[name] !== undefined) members.push(`${quote(name)}:${write(record[name], fieldShape)}`);
  };
  if (shape.kind === 'struct') {
    const known = new Set<string>();
    for (const [name, fieldShape] of shape.fields) {
      known.add(name);
      add(name, fieldShape);
    }
    for (const name of Object.keys(record)
      .filter((key) => !known.has(key))
      .sort(compareKeys))
      add(name, leaf);
  } else {
    // Maps, and objects in leaf positions: sorted keys, as Go's encoder writes map[string]T.
    const inner = shape.kind === 'map' ? shape.of : leaf;
    for (const name of Object.keys(record).sort(compareKeys)) add(name, inner);
  }
  return `{${members.join(',')}}`;
}

/** Serialises `value` canonically (see the module comment). */
export function canonicalJson(value: unknown, shape: Shape = leaf): Buffer {
  return Buffer.from(write(value, shape), 'utf8');
}

export function serializeManifest(manifest: ImageManifest): Buffer {
  return canonicalJson(manifest, manifestShape);
}

export function serializeIndex(index: ImageIndex): Buffer {
  return canonicalJson(index, indexShape);
}

export function serializeConfig(config: ImageConfig): Buffer {
  return canonicalJson(config, configShape);
}

export function serializeDescriptor(descriptor: Descriptor): Buffer {
  return canonicalJson(descriptor, descriptorShape);
}

/** Serialises a document and keeps the bytes and their digest beside it. */
export function toRaw<T>(value: T, shape: Shape): Raw<T> {
  const raw = canonicalJson(value, shape);
  return { value, raw, digest: sha256Digest(raw) };
}
