/**
 * A small, focused validator equivalent to the image-spec JSON schemas (content-descriptor,
 * image-manifest, image-index, config, image-layout; draft-04, image-spec @ 13cff54) plus the
 * checks upstream's Go validator makes outside the schemas:
 * - a `sha256`/`sha512` digest must be lower-case hex of the right length (go-digest);
 * - `urls` entries must be absolute URIs (`format: uri`);
 * - `data` must be standard padded base64;
 * - config `Env` entries must look like `NAME=value`.
 * It exists so that stratum can check documents at run time without a schema engine;
 * test/oci/schema-validator.test.ts proves it reproduces every fixture verdict of
 * shared/corpora/image-spec-schema and agrees with Ajv running the schemas themselves.
 *
 * Each function returns the problems found, as `path: what` strings; an empty list means valid.
 */

export type DocumentKind = 'descriptor' | 'manifest' | 'index' | 'config' | 'layout';

type Problems = string[];

const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ENCODED_BY_ALGORITHM: Readonly<Record<string, RegExp>> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>"{}|\\^`]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// RFC 3339 date-time, as JSON Schema's `date-time` format defines it.
const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;
const ENV = /^[^=]+=.*$/;
const INT64_LIMIT = 9223372036854776000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function expectString(value: unknown, path: string, problems: Problems): value is string {
  if (typeof value === 'string') return true;
  problems.push(`${path}: expected a string, got ${typeName(value)}`);
  return false;
}

function checkMediaType(value: unknown, path: string, problems: Problems): void {
  if (expectString(value, path, problems) && !MEDIA_TYPE.test(value)) {
    problems.push(`${path}: "${value}" is not a media type (type/subtype)`);
  }
}

function checkDigest(value: unknown, path: string, problems: Problems): void {
  if (!expectString(value, path, problems)) return;
  if (!DIGEST.test(value)) {
    problems.push(`${path}: "${value}" is not a digest (algorithm:encoded)`);
    return;
  }
  const colon = value.indexOf(':');
  const pattern = ENCODED_BY_ALGORITHM[value.slice(0, colon)];
  if (pattern && !pattern.test(value.slice(colon + 1))) {
    problems.push(`${path}: "${value}" has an invalid ${value.slice(0, colon)} encoding`);
  }
}

function checkInteger(value: unknown, path: string, min: number, problems: Problems): void {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    problems.push(`${path}: expected an integer, got ${typeName(value)}`);
  } else if (value < min || value > INT64_LIMIT) {
    problems.push(`${path}: ${value} is out of range`);
  }
}

function checkStringArray(
  value: unknown,
  path: string,
  problems: Problems,
  item?: (text: string, at: string) => void,
): void {
  if (!Array.isArray(value)) {
    problems.push(`${path}: expected an array, got ${typeName(value)}`);
    return;
  }
  value.forEach((entry: unknown, index) => {
    if (expectString(entry, `${path}[${index}]`, problems)) item?.(entry, `${path}[${index}]`);
  });
}

/** defs.json mapStringString / mapStringObject: values of non-empty keys must be strings / objects. */
function checkMap(value: unknown, path: string, of: 'string' | 'object', problems: Problems): void {
  if (!isObject(value)) {
    problems.push(`${path}: expected an object, got ${typeName(value)}`);
    return;
  }
  for (const [key, entry] of Object.entries(value)) {
    if (key.length === 0) continue;
    if (of === 'string' ? typeof entry !== 'string' : !isObject(entry)) {
      problems.push(
        `${path}["${key}"]: expected ${of === 'string' ? 'a string' : 'an object'}, got ${typeName(entry)}`,
      );
    }
  }
}

function checkUrls(value: unknown, path: string, problems: Problems): void {
  checkStringArray(value, path, problems, (text, at) => {
    if (!URI.test(text)) problems.push(`${at}: "${text}" is not an absolute URI`);
  });
}

function checkPlatform(value: unknown, path: string, problems: Problems): void {
  if (!isObject(value)) {
    problems.push(`${path}: expected an object, got ${typeName(value)}`);
    return;
  }
  for (const field of ['architecture', 'os'] as const) {
    if (value[field] === undefined) problems.push(`${path}.${field}: missing`);
    else expectString(value[field], `${path}.${field}`, problems);
  }
  if (value['os.version'] !== undefined) expectString(value['os.version'], `${path}["os.version"]`, problems);
  if (value['os.features'] !== undefined)
    checkStringArray(value['os.features'], `${path}["os.features"]`, problems);
  if (value['variant'] !== undefined) expectString(value['variant'], `${path}.variant`, problems);
}

function required(
  value: Record<string, unknown>,
  fields: readonly string[],
  path: string,
  problems: Problems,
): void {
  for (const field of fields) if (value[field] === undefined) problems.push(`${path}.${field}: missing`);
}

/** content-descriptor.json */
export function descriptorProblems(value: unknown, path = '$'): Problems {
  const problems: Problems = [];
  if (!isObject(value)) return [`${path}: expected an object, got ${typeName(value)}`];
  required(value, ['mediaType', 'size', 'digest'], path, problems);
  if (value['mediaType'] !== undefined) checkMediaType(value['mediaType'], `${path}.mediaType`, problems);
  if (value['size'] !== undefined) checkInteger(value['size'], `${path}.size`, 0, problems);
  if (value['digest'] !== undefined) checkDigest(value['digest'], `${path}.digest`, problems);
  if (value['urls'] !== undefined) checkUrls(value['urls'], `${path}.urls`, problems);
  if (value['data'] !== undefined && expectString(value['data'], `${path}.data`, problems)) {
    if (!BASE64.test(value['data'])) problems.push(`${path}.data: not standard padded base64`);
  }
  if (value['artifactType'] !== undefined)
    checkMediaType(value['artifactType'], `${path}.artifactType`, problems);
  if (value['annotations'] !== undefined)
    checkMap(value['annotations'], `${path}.annotations`, 'string', problems);
  return problems;
}

function checkSchemaVersion(value: Record<string, unknown>, path: string, problems: Problems): void {
  const version = value['schemaVersion'];
  if (version === undefined) return;
  if (typeof version !== 'number' || !Number.isInteger(version)) {
    problems.push(`${path}.schemaVersion: expected an integer, got ${typeName(version)}`);
  } else if (version !== 2) problems.push(`${path}.schemaVersion: must be 2, got ${version}`);
}

function checkCommon(value: Record<string, unknown>, path: string, problems: Problems): void {
  checkSchemaVersion(value, path, problems);
  if (value['mediaType'] !== undefined) checkMediaType(value['mediaType'], `${path}.mediaType`, problems);
  if (value['artifactType'] !== undefined)
    checkMediaType(value['artifactType'], `${path}.artifactType`, problems);
  if (value['subject'] !== undefined)
    problems.push(...descriptorProblems(value['subject'], `${path}.subject`));
  if (value['annotations'] !== undefined)
    checkMap(value['annotations'], `${path}.annotations`, 'string', problems);
}

/** image-manifest-schema.json */
export function manifestProblems(
  value: unknown,
  path = '$',
  options: { readonly allowEmptyLayers?: boolean } = {},
): Problems {
  if (!isObject(value)) return [`${path}: expected an object, got ${typeName(value)}`];
  const problems: Problems = [];
  required(value, ['schemaVersion', 'config', 'layers'], path, problems);
  checkCommon(value, path, problems);
  if (value['config'] !== undefined) problems.push(...descriptorProblems(value['config'], `${path}.config`));
  const layers = value['layers'];
  if (layers !== undefined) {
    if (!Array.isArray(layers)) problems.push(`${path}.layers: expected an array, got ${typeName(layers)}`);
    else {
      if (layers.length === 0 && options.allowEmptyLayers !== true)
        problems.push(`${path}.layers: must name at least one layer`);
      layers.forEach((layer: unknown, index) =>
        problems.push(...descriptorProblems(layer, `${path}.layers[${index}]`)),
      );
    }
  }
  return problems;
}

/** image-index-schema.json (its `manifests[]` items are looser descriptors: int64 size, no data/artifactType rules). */
export function indexProblems(value: unknown, path = '$'): Problems {
  if (!isObject(value)) return [`${path}: expected an object, got ${typeName(value)}`];
  const problems: Problems = [];
  required(value, ['schemaVersion', 'manifests'], path, problems);
  checkCommon(value, path, problems);
  const manifests = value['manifests'];
  if (manifests === undefined) return problems;
  if (!Array.isArray(manifests))
    return [...problems, `${path}.manifests: expected an array, got ${typeName(manifests)}`];
  manifests.forEach((entry: unknown, index) => {
    const at = `${path}.manifests[${index}]`;
    if (!isObject(entry)) {
      problems.push(`${at}: expected an object, got ${typeName(entry)}`);
      return;
    }
    required(entry, ['mediaType', 'size', 'digest'], at, problems);
    if (entry['mediaType'] !== undefined) checkMediaType(entry['mediaType'], `${at}.mediaType`, problems);
    if (entry['size'] !== undefined) checkInteger(entry['size'], `${at}.size`, -INT64_LIMIT, problems);
    if (entry['digest'] !== undefined) checkDigest(entry['digest'], `${at}.digest`, problems);
    if (entry['urls'] !== undefined) checkUrls(entry['urls'], `${at}.urls`, problems);
    if (entry['platform'] !== undefined) checkPlatform(entry['platform'], `${at}.platform`, problems);
    if (entry['annotations'] !== undefined)
      checkMap(entry['annotations'], `${at}.annotations`, 'string', problems);
  });
  return problems;
}

function checkNullableStringArray(value: unknown, path: string, problems: Problems): void {
  if (value !== null) checkStringArray(value, path, problems);
}

/** config-schema.json */
export function configProblems(value: unknown, path = '$'): Problems {
  if (!isObject(value)) return [`${path}: expected an object, got ${typeName(value)}`];
  const problems: Problems = [];
  required(value, ['architecture', 'os', 'rootfs'], path, problems);
  if (value['created'] !== undefined && expectString(value['created'], `${path}.created`, problems)) {
    if (!DATE_TIME.test(value['created']))
      problems.push(`${path}.created: "${value['created']}" is not an RFC 3339 time`);
  }
  for (const field of ['author', 'architecture', 'variant', 'os', 'os.version']) {
    if (value[field] !== undefined) expectString(value[field], `${path}["${field}"]`, problems);
  }
  if (value['os.features'] !== undefined)
    checkStringArray(value['os.features'], `${path}["os.features"]`, problems);
  const config = value['config'];
  if (config !== undefined) {
    const at = `${path}.config`;
    if (!isObject(config)) problems.push(`${at}: expected an object, got ${typeName(config)}`);
    else {
      for (const field of ['User', 'WorkingDir', 'StopSignal']) {
        if (config[field] !== undefined) expectString(config[field], `${at}.${field}`, problems);
      }
      if (config['ExposedPorts'] !== undefined)
        checkMap(config['ExposedPorts'], `${at}.ExposedPorts`, 'object', problems);
      if (config['Env'] !== undefined) {
        checkStringArray(config['Env'], `${at}.Env`, problems, (entry, envAt) => {
          if (!ENV.test(entry)) problems.push(`${envAt}: "${entry}" is not NAME=value`);
        });
      }
      if (config['Entrypoint'] !== undefined)
        checkNullableStringArray(config['Entrypoint'], `${at}.Entrypoint`, problems);
      if (config['Cmd'] !== undefined) checkNullableStringArray(config['Cmd'], `${at}.Cmd`, problems);
      if (config['Volumes'] !== undefined && config['Volumes'] !== null) {
        checkMap(config['Volumes'], `${at}.Volumes`, 'object', problems);
      }
      if (config['Labels'] !== undefined && config['Labels'] !== null) {
        checkMap(config['Labels'], `${at}.Labels`, 'string', problems);
      }
      if (config['ArgsEscaped'] !== undefined && typeof config['ArgsEscaped'] !== 'boolean') {
        problems.push(`${at}.ArgsEscaped: expected a boolean, got ${typeName(config['ArgsEscaped'])}`);
      }
    }
  }
  const rootfs = value['rootfs'];
  if (rootfs !== undefined) {
    const at = `${path}.rootfs`;
    if (!isObject(rootfs)) problems.push(`${at}: expected an object, got ${typeName(rootfs)}`);
    else {
      required(rootfs, ['diff_ids', 'type'], at, problems);
      if (rootfs['diff_ids'] !== undefined) checkStringArray(rootfs['diff_ids'], `${at}.diff_ids`, problems);
      if (rootfs['type'] !== undefined && rootfs['type'] !== 'layers')
        problems.push(`${at}.type: must be "layers"`);
    }
  }
  const history = value['history'];
  if (history !== undefined) {
    if (!Array.isArray(history))
      problems.push(`${path}.history: expected an array, got ${typeName(history)}`);
    else {
      history.forEach((entry: unknown, index) => {
        const at = `${path}.history[${index}]`;
        if (!isObject(entry)) {
          problems.push(`${at}: expected an object, got ${typeName(entry)}`);
          return;
        }
        if (entry['created'] !== undefined && expectString(entry['created'], `${at}.created`, problems)) {
          if (!DATE_TIME.test(entry['created']))
            problems.push(`${at}.created: "${entry['created']}" is not an RFC 3339 time`);
        }
        for (const field of ['author', 'created_by', 'comment']) {
          if (entry[field] !== undefined) expectString(entry[field], `${at}.${field}`, problems);
        }
        if (entry['empty_layer'] !== undefined && typeof entry['empty_layer'] !== 'boolean') {
          problems.push(`${at}.empty_layer: expected a boolean, got ${typeName(entry['empty_layer'])}`);
        }
      });
    }
  }
  return problems;
}

/** image-layout-schema.json (the `oci-layout` file) */
export function layoutProblems(value: unknown, path = '$'): Problems {
  if (!isObject(value)) return [`${path}: expected an object, got ${typeName(value)}`];
  if (value['imageLayoutVersion'] === undefined) return [`${path}.imageLayoutVersion: missing`];
  if (value['imageLayoutVersion'] !== '1.0.0') return [`${path}.imageLayoutVersion: must be "1.0.0"`];
  return [];
}

export function documentProblems(kind: DocumentKind, value: unknown): Problems {
  switch (kind) {
    case 'descriptor':
      return descriptorProblems(value);
    case 'manifest':
      return manifestProblems(value);
    case 'index':
      return indexProblems(value);
    case 'config':
      return configProblems(value);
    case 'layout':
      return layoutProblems(value);
  }
}
