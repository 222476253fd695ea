import { resolve } from 'node:path';
import { StratumError, isStratumError } from '../../errors.js';
import { parseRegistryReference, type RegistryReference } from '../../registry/reference.js';
import { DEFAULT_MOUNTS_MAX_SIZE, mountAttribute } from '../mount-export.js';

/**
 * What `--cache-from` and `--cache-to` take: `registry:REF` or BuildKit's `type=registry,ref=REF`
 * (a registry tag, registry.ts) and `type=local,src|dest=DIR` (an OCI layout directory,
 * local.ts), with the attributes an export takes. A bad value is a USAGE error naming it,
 * before any network or file is touched.
 */

/** The tag a cache goes under when none is given (in a registry and in a directory alike). */
export const DEFAULT_CACHE_TAG = 'stratum-cache';

/** What a `--cache-to` says besides where: the same for every kind of cache. */
export interface ExportAttributes {
  /** BuildKit's `ignore-error=true`: a failed export is a warning, not a failed build. */
  readonly ignoreError: boolean;
  /** `mounts=true`: the cache mounts' contents travel too (mount-export.ts). */
  readonly mounts: boolean;
  readonly mountsMaxSize: number;
}

export interface CacheRef extends ExportAttributes {
  readonly registry: string;
  readonly repository: string;
  /** The tag the cache is stored under; absent only when read by digest. */
  readonly tag?: string;
  readonly digest?: string;
  /** `registry:host/repo:tag`, how messages and `--explain` name this cache. */
  readonly name: string;
}

export interface LocalCacheRef extends ExportAttributes {
  readonly dir: string;
  /** `local:DIR`, how messages and `--explain` name this cache. */
  readonly name: string;
}

/** Either kind, by what the value says: `type=local` is a directory, anything else a registry. */
export function parseCacheSpec(text: string, direction: 'from' | 'to'): CacheRef | LocalCacheRef {
  return isLocalCacheSpec(text) ? parseLocalCacheRef(text, direction) : parseCacheRef(text);
}

/** Whether a `--cache-from`/`--cache-to` value is the local form (`type=local,...`). */
export function isLocalCacheSpec(text: string): boolean {
  return text.split(',').some((part) => part.trim() === 'type=local');
}

/**
 * `registry:HOST/REPO[:TAG]` (tag default `stratum-cache`), or BuildKit's
 * `type=registry,ref=HOST/REPO[:TAG][,mode=max][,ignore-error=true|false]`, with stratum's
 * `mounts=true` and `mounts-max-size=SIZE` (cache mount contents, for --cache-to).
 */
export function parseCacheRef(text: string): CacheRef {
  const usage = (reason: string): StratumError =>
    new StratumError(
      'USAGE',
      `cache "${text}": ${reason} (use registry:HOST/REPOSITORY[:TAG] or type=registry,ref=HOST/REPOSITORY[:TAG])`,
    );
  let reference: string;
  const attributes: Mutable<ExportAttributes> = defaultAttributes();
  if (text.startsWith('registry:')) {
    reference = text.slice('registry:'.length);
  } else if (text.startsWith('type=')) {
    const given = keyValues(text, usage);
    if (given.get('type') !== 'registry') {
      throw usage(`cache type "${given.get('type') ?? ''}" is not supported, only registry or local`);
    }
    reference = given.get('ref') ?? '';
    if (reference === '') throw usage('ref= is missing');
    for (const [key, value] of given) {
      if (key === 'type' || key === 'ref') continue;
      if (!exportAttribute(key, value, attributes, usage)) throw usage(`attribute "${key}" is not supported`);
    }
  } else {
    throw usage('unknown cache kind');
  }
  if (reference === '') throw usage('no reference');
  if (reference.includes('://')) throw usage('give the reference without a transport');
  let parsed: RegistryReference;
  try {
    // parseRegistryReference adds `latest` to a reference without a tag; the cache's default
    // is its own tag, so that pointing --cache-to at an image's repository never hits `latest`.
    const lastSlash = reference.lastIndexOf('/');
    const hasTag = reference.indexOf(':', lastSlash + 1) !== -1 || reference.includes('@');
    parsed = parseRegistryReference(hasTag ? reference : `${reference}:${DEFAULT_CACHE_TAG}`);
  } catch (error) {
    if (isStratumError(error)) throw usage(error.message);
    throw error;
  }
  const name = `registry:${parsed.registry}/${parsed.repository}${
    parsed.digest !== undefined ? `@${parsed.digest}` : `:${parsed.tag ?? DEFAULT_CACHE_TAG}`
  }`;
  return {
    registry: parsed.registry,
    repository: parsed.repository,
    ...(parsed.digest !== undefined ? { digest: parsed.digest } : { tag: parsed.tag ?? DEFAULT_CACHE_TAG }),
    name,
    ...attributes,
  };
}

/**
 * `type=local,dest=DIR[,mode=max][,ignore-error=true|false][,mounts=true][,mounts-max-size=SIZE]`
 * for `--cache-to`, `type=local,src=DIR` for `--cache-from`.
 */
export function parseLocalCacheRef(text: string, direction: 'from' | 'to'): LocalCacheRef {
  const pathKey = direction === 'from' ? 'src' : 'dest';
  const flag = direction === 'from' ? '--cache-from' : '--cache-to';
  const usage = (reason: string): StratumError =>
    new StratumError('USAGE', `${flag} "${text}": ${reason} (use type=local,${pathKey}=DIR)`);
  const given = keyValues(text, usage);
  const attributes: Mutable<ExportAttributes> = defaultAttributes();
  for (const [key, value] of given) {
    if (key === 'type' || key === pathKey) continue;
    if (direction === 'to' && exportAttribute(key, value, attributes, usage)) continue;
    if (key === 'src' || key === 'dest') {
      throw usage(
        `"${key}" is for ${key === 'src' ? '--cache-from' : '--cache-to'}; ${flag} takes ${pathKey}=`,
      );
    }
    throw usage(`attribute "${key}" is not supported`);
  }
  const dir = given.get(pathKey) ?? '';
  if (dir === '') throw usage(`${pathKey}= is missing`);
  return { dir: resolve(dir), name: `local:${dir}`, ...attributes };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function defaultAttributes(): Mutable<ExportAttributes> {
  return { ignoreError: false, mounts: false, mountsMaxSize: DEFAULT_MOUNTS_MAX_SIZE };
}

/** `k=v,k=v` as a map; a part without `=` or a key given twice is a usage error. */
function keyValues(text: string, usage: (reason: string) => StratumError): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`"${part}" is not key=value`);
    const key = part.slice(0, eq).trim();
    if (out.has(key)) throw usage(`"${key}" given twice`);
    out.set(key, part.slice(eq + 1).trim());
  }
  return out;
}

/** Reads one export attribute into `into`; false when `key` is none of them. */
function exportAttribute(
  key: string,
  value: string,
  into: Mutable<ExportAttributes>,
  usage: (reason: string) => StratumError,
): boolean {
  if (mountAttribute(key, value, into, usage)) return true;
  if (key === 'mode') {
    // stratum always exports every step of every stage it built: BuildKit's mode=max.
    if (value !== 'max') throw usage(`mode=${value} is not supported; stratum exports every step (mode=max)`);
    return true;
  }
  if (key === 'ignore-error') {
    if (value !== 'true' && value !== 'false') throw usage('ignore-error must be true or false');
    into.ignoreError = value === 'true';
    return true;
  }
  return false;
}
