import { resolve } from 'node:path';
import { StratumError } from '../errors.js';
import { parseCompression, type CompressionSpec } from '../oci/compression.js';
import { parseImageReference } from '../oci/reference.js';

/**
 * `build -o/--output` in both spellings: stratum's transports (`oci:DIR[:TAG]`,
 * `docker-archive:FILE[:NAME]`, `docker://REF`, `docker-daemon:NAME`, a store name) and
 * BuildKit's CSV form (`type=local,dest=DIR`, `type=tar,dest=FILE|-`, `type=oci,dest=FILE`,
 * `type=docker[,dest=FILE][,name=NAME]`, `type=image,name=REF[,push=true]`,
 * `type=registry,ref=REF`), as `docker buildx build` reads it. Everything is checked before the
 * build starts, so a typo costs no build; an unknown type or key is a usage error naming it.
 */

export type OutputTarget =
  /** An image written through a transport (`oci:`, archives, store, `docker://`). */
  | { readonly kind: 'image'; readonly reference: string }
  /** An image loaded into the Docker daemon (`--load`, `type=docker` without dest). */
  | { readonly kind: 'daemon'; readonly names: readonly string[] }
  /** The final filesystem, no image (`type=local`). */
  | { readonly kind: 'local'; readonly dir: string }
  /** The final filesystem as one tar (`type=tar`); no file means standard output. */
  | { readonly kind: 'tar'; readonly file: string | undefined };

/** The keys each BuildKit exporter type takes here; anything else is refused by name. */
const COMPRESSION_KEYS = ['compression', 'compression-level', 'force-compression'];
const KEYS: Readonly<Record<string, readonly string[]>> = {
  local: ['dest'],
  tar: ['dest'],
  oci: ['dest', 'name', 'tar', ...COMPRESSION_KEYS],
  docker: ['dest', 'name', 'tar', ...COMPRESSION_KEYS],
  image: ['name', 'push', ...COMPRESSION_KEYS],
  registry: ['ref', 'name', 'push', ...COMPRESSION_KEYS],
};

/**
 * The layer compression the `-o` values ask for (BuildKit's `compression=gzip|zstd|uncompressed`,
 * `compression-level=N`, `force-compression=true`), or undefined when none does. One build
 * writes one set of layers, so outputs asking for different compressions are a usage error.
 * `force-compression=true` (recompress base layers too) is not implemented: UNSUPPORTED.
 */
export function outputCompression(values: readonly string[]): CompressionSpec | undefined {
  let chosen: { spec: CompressionSpec; text: string; value: string } | undefined;
  for (const value of values) {
    if (!value.startsWith('type=')) continue;
    const fields = parseFields(value);
    const name = fields.get('compression');
    const level = fields.get('compression-level');
    if (booleanField(fields, 'force-compression', value, false)) {
      throw new StratumError(
        'UNSUPPORTED',
        `--output ${value}: force-compression=true (recompressing base layers) is not supported; the layers this build makes use compression=, base layers keep theirs (use compression=${name ?? 'gzip'} without force-compression)`,
      );
    }
    if (name === undefined) {
      if (level !== undefined)
        throw new StratumError('USAGE', `--output ${value}: compression-level needs compression=gzip|zstd`);
      continue;
    }
    if (level !== undefined && !/^-?\d+$/.test(level))
      throw new StratumError('USAGE', `--output ${value}: compression-level=${level} is not a number`);
    const text = level === undefined ? name : `${name},level=${level}`;
    const spec = parseCompression(text, `--output ${value}`);
    if (
      chosen !== undefined &&
      (chosen.spec.algorithm !== spec.algorithm || chosen.spec.level !== spec.level)
    ) {
      throw new StratumError(
        'USAGE',
        `--output: ${chosen.value} and ${value} ask for different layer compressions (${chosen.text}, ${text}); one build writes one set of layers`,
      );
    }
    chosen ??= { spec, text, value };
  }
  return chosen?.spec;
}

/**
 * Turns every `-o` value (and `--load`) into targets. `tags` are the `-t` names: BuildKit's
 * image, docker and registry exporters name the image with them when the output has no name.
 */
export function parseOutputs(
  values: readonly string[],
  tags: readonly string[],
  load = false,
): OutputTarget[] {
  const targets = values.flatMap((value) => parseOutput(value, tags));
  if (load) targets.push({ kind: 'daemon', names: tags });
  const toStdout = targets.filter((target) => target.kind === 'tar' && target.file === undefined);
  if (toStdout.length > 1)
    throw new StratumError('USAGE', '--output: only one output can go to standard output');
  return targets;
}

export function parseOutput(value: string, tags: readonly string[]): OutputTarget[] {
  if (value === '-') return [{ kind: 'tar', file: undefined }];
  if (!value.startsWith('type=')) {
    parseImageReference(value);
    return [{ kind: 'image', reference: value }];
  }
  const fields = parseFields(value);
  const type = fields.get('type') ?? '';
  const known = KEYS[type];
  if (known === undefined) {
    throw new StratumError(
      'USAGE',
      `--output ${value}: unknown type "${type}" (expected one of: ${Object.keys(KEYS).join(', ')}, or a transport such as oci:DIR)`,
    );
  }
  for (const key of fields.keys()) {
    if (key !== 'type' && !known.includes(key)) {
      throw new StratumError(
        'USAGE',
        `--output ${value}: unknown key "${key}" for type=${type} (known: ${known.join(', ')})`,
      );
    }
  }
  const dest = fields.get('dest');
  const names = namesOf(fields, tags);
  const needDest = (): string => {
    if (dest === undefined || dest === '')
      throw new StratumError('USAGE', `--output ${value}: type=${type} needs dest=PATH`);
    return dest;
  };
  switch (type) {
    case 'local':
      return [{ kind: 'local', dir: resolve(needDest()) }];
    case 'tar': {
      const file = needDest();
      return [{ kind: 'tar', file: file === '-' ? undefined : resolve(file) }];
    }
    case 'oci': {
      const path = resolve(needDest());
      const asDirectory = !booleanField(fields, 'tar', value, true);
      return [
        image(
          `${asDirectory ? 'oci' : 'oci-archive'}:${path}${names[0] === undefined ? '' : `:${names[0]}`}`,
        ),
      ];
    }
    case 'docker': {
      if (dest === undefined) return [{ kind: 'daemon', names }];
      booleanField(fields, 'tar', value, true);
      const path = resolve(needDest());
      return [image(`docker-archive:${path}${names[0] === undefined ? '' : `:${names[0]}`}`)];
    }
    case 'image': {
      if (names.length === 0)
        throw new StratumError('USAGE', `--output ${value}: type=image needs name=REF (or -t NAME)`);
      const push = booleanField(fields, 'push', value, false);
      return names.flatMap((name) => [image(name), ...(push ? [image(`docker://${name}`)] : [])]);
    }
    case 'registry': {
      if (names.length === 0)
        throw new StratumError('USAGE', `--output ${value}: type=registry needs ref=REF (or -t NAME)`);
      if (!booleanField(fields, 'push', value, true))
        throw new StratumError(
          'USAGE',
          `--output ${value}: type=registry always pushes; use type=image to keep it local`,
        );
      return names.map((name) => image(`docker://${name}`));
    }
    default:
      throw new StratumError('USAGE', `--output ${value}: unknown type "${type}"`);
  }
}

function image(reference: string): OutputTarget {
  parseImageReference(reference);
  return { kind: 'image', reference };
}

/** `name=` / `ref=` (several names separated by commas inside double quotes, as buildx), else -t. */
function namesOf(fields: ReadonlyMap<string, string>, tags: readonly string[]): string[] {
  const given = fields.get('name') ?? fields.get('ref');
  if (given === undefined || given === '') return [...tags];
  return given
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
}

function booleanField(
  fields: ReadonlyMap<string, string>,
  key: string,
  value: string,
  fallback: boolean,
): boolean {
  const text = fields.get(key);
  if (text === undefined) return fallback;
  if (text === 'true' || text === '') return true;
  if (text === 'false') return false;
  throw new StratumError('USAGE', `--output ${value}: ${key}=${text} is not true or false`);
}

/**
 * BuildKit's CSV fields: `key=value` separated by commas; a double-quoted field may hold commas
 * (`"name=a:1,b:1"`). A key given twice is refused rather than silently overridden.
 */
export function parseFields(value: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    if (key === '') throw new StratumError('USAGE', `--output ${value}: empty key in "${field}"`);
    if (fields.has(key)) throw new StratumError('USAGE', `--output ${value}: key "${key}" given twice`);
    fields.set(key, eq < 0 ? '' : field.slice(eq + 1));
  }
  return fields;
}

function splitCsv(value: string): string[] {
  const fields: string[] = [];
  let current = '';
  let quoted = false;
  for (const char of value) {
    if (char === '"') quoted = !quoted;
    else if (char === ',' && !quoted) {
      fields.push(current);
      current = '';
    } else current += char;
  }
  if (quoted) throw new StratumError('USAGE', `--output ${value}: unbalanced double quote`);
  fields.push(current);
  return fields;
}
