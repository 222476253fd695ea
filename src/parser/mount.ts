/**
 * `RUN --mount=...` specs, checked as BuildKit's parseMount does
 * (instructions/commands_runmount.go): CSV fields `key=value`, types bind (default), cache,
 * tmpfs, secret, ssh, each with its own options and defaults. The engine re-parses with an
 * expander at build time (option values may hold ${VARS}); the parser checks the raw text.
 */
import { StratumError } from '../errors.js';
import type { MountSpec } from './types.js';
import { suggest } from './suggest.js';

export class MountError extends Error {
  constructor(
    message: string,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

const mountTypes = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'] as const;
type MountType = (typeof mountTypes)[number];

const allKeys = [
  'type',
  'from',
  'source',
  'target',
  'readonly',
  'id',
  'sharing',
  'required',
  'size',
  'mode',
  'uid',
  'gid',
  'src',
  'dst',
  'destination',
  'ro',
  'rw',
  'readwrite',
  'env',
];

/** One CSV record as Go's encoding/csv reads it (quotes, `""` inside quotes). */
export function parseCsvFields(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length)
          throw new MountError(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
        const ch = text[i]!;
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += ch;
        i++;
      }
      if (i < text.length && text[i] !== ',') {
        throw new MountError(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
      }
    } else {
      const end = text.indexOf(',', i);
      field = end === -1 ? text.slice(i) : text.slice(i, end);
      if (field.includes('"')) throw new MountError(`failed to parse csv mounts: bare " in non-quoted-field`);
      i = end === -1 ? text.length : end;
    }
    fields.push(field);
    if (i >= text.length) return fields;
    i++; // the comma
  }
}

function parseBool(value: string): boolean | undefined {
  switch (value) {
    case '1':
    case 't':
    case 'T':
    case 'true':
    case 'TRUE':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'false':
    case 'FALSE':
    case 'False':
      return false;
    default:
      return undefined;
  }
}

function parseUint(value: string, radix: 8 | 10): number | undefined {
  const re = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(value)) return undefined;
  const n = Number.parseInt(value, radix);
  return n <= 0xffffffff ? n : undefined;
}

/** docker/go-units RAMInBytes: "64m", "1.5g", "512", binary multiples. */
export function ramInBytes(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(value);
  if (m === null) return undefined;
  const n = Number.parseFloat(m[1]!);
  const exp = m[2] === undefined ? 0 : 'kmgtp'.indexOf(m[2].toLowerCase()) + 1;
  return Math.trunc(n * 1024 ** exp);
}

/**
 * Parses one --mount value. `expand` (build time) expands each option value; without it
 * the raw text is checked, as BuildKit does at parse time.
 */
export function parseMount(text: string, expand?: (value: string) => string): MountSpec {
  let type: MountType = 'bind';
  let readOnly: boolean | undefined;
  let required = false;
  let from: string | undefined;
  let source: string | undefined;
  let target: string | undefined;
  let id: string | undefined;
  let sharing: string | undefined;
  let size: number | undefined;
  let mode: number | undefined;
  let uid: number | undefined;
  let gid: number | undefined;
  let env: string | undefined;

  for (const field of parseCsvFields(text)) {
    const eq = field.indexOf('=');
    const key = (eq === -1 ? field : field.slice(0, eq)).toLowerCase();
    if (eq === -1) {
      switch (key) {
        case 'readonly':
        case 'ro':
          readOnly = true;
          continue;
        case 'readwrite':
        case 'rw':
          readOnly = false;
          continue;
        case 'required':
          if (type === 'secret' || type === 'ssh') {
            required = true;
            continue;
          }
          throw new MountError(`unexpected key '${key}' for mount type '${type}'`);
        default:
          throw new MountError(`invalid field '${field}' must be a key=value pair`);
      }
    }
    let value = field.slice(eq + 1);
    if (expand !== undefined) value = expand(value);
    switch (key) {
      case 'type': {
        const lower = value.toLowerCase();
        if (!(mountTypes as readonly string[]).includes(lower)) {
          const guess = suggest(value, mountTypes);
          throw new MountError(
            `unsupported mount type ${JSON.stringify(value)} (valid: ${mountTypes.join(', ')})`,
            guess === undefined ? undefined : `did you mean type=${guess}?`,
          );
        }
        type = lower as MountType;
        break;
      }
      case 'from':
        from = value;
        break;
      case 'source':
      case 'src':
        source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        target = value;
        break;
      case 'readonly':
      case 'ro':
      case 'readwrite':
      case 'rw': {
        const b = parseBool(value);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${value}`);
        readOnly = key === 'readonly' || key === 'ro' ? b : !b;
        break;
      }
      case 'required': {
        if (type !== 'secret' && type !== 'ssh') {
          throw new MountError(`unexpected key '${key}' for mount type '${type}'`);
        }
        const b = parseBool(value);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${value}`);
        required = b;
        break;
      }
      case 'size':
        if (type !== 'tmpfs') throw new MountError(`unexpected key '${key}' for mount type '${type}'`);
        size = ramInBytes(value);
        if (size === undefined) throw new MountError(`invalid value for ${key}: ${value}`);
        break;
      case 'id':
        id = value;
        break;
      case 'sharing':
        if (value !== 'shared' && value !== 'private' && value !== 'locked') {
          throw new MountError(
            `unsupported sharing value ${JSON.stringify(value)} (valid: shared, private, locked)`,
          );
        }
        sharing = value;
        break;
      case 'mode':
        mode = parseUint(value, 8);
        if (mode === undefined) throw new MountError(`invalid value ${value} for mode`);
        break;
      case 'uid':
        uid = parseUint(value, 10);
        if (uid === undefined) throw new MountError(`invalid value ${value} for uid`);
        break;
      case 'gid':
        gid = parseUint(value, 10);
        if (gid === undefined) throw new MountError(`invalid value ${value} for gid`);
        break;
      case 'env':
        env = value;
        break;
      default: {
        const guess = suggest(key, allKeys, true);
        throw new MountError(
          `unexpected key '${key}' in '${field}'`,
          guess === undefined ? undefined : `did you mean ${guess}?`,
        );
      }
    }
  }

  const fileInfoAllowed = type === 'secret' || type === 'ssh' || type === 'cache';
  if (!fileInfoAllowed) {
    if (mode !== undefined) throw new MountError(`mode not allowed for ${JSON.stringify(type)} type mounts`);
    if (uid !== undefined) throw new MountError(`uid not allowed for ${JSON.stringify(type)} type mounts`);
    if (gid !== undefined) throw new MountError(`gid not allowed for ${JSON.stringify(type)} type mounts`);
  }
  if (sharing !== undefined && type !== 'cache') {
    throw new MountError(`invalid cache sharing set for ${type} mount`);
  }
  // Cache and tmpfs mounts are writable unless asked otherwise; the others read-only.
  const ro = readOnly ?? !(type === 'cache' || type === 'tmpfs');
  const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
    (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };

  switch (type) {
    case 'bind':
      if (target === undefined) throw new MountError('mount target is required for bind mounts');
      return { type, target, ...opt('source', source), ...opt('from', from), readOnly: ro };
    case 'cache':
      if (target === undefined) throw new MountError('mount target is required for cache mounts');
      return {
        type,
        target,
        ...opt('id', id),
        ...opt('source', source),
        ...opt('from', from),
        readOnly: ro,
        sharing: (sharing ?? 'shared') as 'shared' | 'private' | 'locked',
        ...opt('mode', mode),
        ...opt('uid', uid),
        ...opt('gid', gid),
      };
    case 'tmpfs':
      if (target === undefined) throw new MountError('mount target is required for tmpfs mounts');
      return { type, target, ...opt('size', size), readOnly: ro };
    case 'secret':
      if (from !== undefined) throw new MountError('secret mount should not have a from');
      if (source === undefined && target === undefined && id === undefined && env === undefined) {
        throw new MountError('invalid secret mount. one of source, target required');
      }
      if (source !== undefined && id !== undefined) throw new MountError("both source and id can't be set");
      return {
        type,
        ...opt('id', id ?? source),
        ...opt('target', target),
        ...opt('env', env),
        required,
        ...opt('mode', mode),
        ...opt('uid', uid),
        ...opt('gid', gid),
        readOnly: ro,
      };
    case 'ssh':
      if (from !== undefined) throw new MountError('ssh mount should not have a from');
      return {
        type,
        ...opt('id', id ?? source),
        ...opt('target', target),
        required,
        ...opt('mode', mode),
        ...opt('uid', uid),
        ...opt('gid', gid),
        readOnly: ro,
      };
  }
}

/**
 * parseMount for callers outside the parser (the build engine, with `expand` doing the
 * ARG/ENV expansion): a bad spec is a StratumError naming `where` (e.g. `Dockerfile:7`).
 */
export function parseMountSpec(text: string, expand?: (value: string) => string, where?: string): MountSpec {
  try {
    return parseMount(text, expand);
  } catch (error) {
    if (!(error instanceof MountError)) throw error;
    const message =
      `--mount=${text}: ${error.message}` + (error.suggestion === undefined ? '' : ` (${error.suggestion})`);
    throw new StratumError('PARSE', where === undefined ? message : `${where}: ${message}`);
  }
}
