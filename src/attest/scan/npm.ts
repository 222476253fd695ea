import type { FoundPackage } from './package.js';
import { purl } from '../purl.js';

/**
 * npm packages: every `node_modules/NAME/package.json` and `node_modules/@SCOPE/NAME/package.json`
 * (installed packages, nested ones included; a project's own package.json outside node_modules
 * is not an installed package). The licence is `license` (a string or the old `{type}` form) or
 * the older `licenses` array.
 */

export function isNpmManifest(path: string): boolean {
  return /(^|\/)node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/.test(path);
}

interface PackageJson {
  readonly name?: unknown;
  readonly version?: unknown;
  readonly license?: unknown;
  readonly licenses?: unknown;
  readonly homepage?: unknown;
  readonly description?: unknown;
  readonly author?: unknown;
}

function licenceOf(manifest: PackageJson): string | undefined {
  const one = (value: unknown): string | undefined => {
    if (typeof value === 'string') return value;
    if (typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string')
      return (value as { type: string }).type;
    return undefined;
  };
  const single = one(manifest.license);
  if (single !== undefined) return single;
  if (Array.isArray(manifest.licenses)) {
    const all = manifest.licenses.map(one).filter((name): name is string => name !== undefined);
    if (all.length > 0) return all.length === 1 ? all[0] : `(${all.join(' OR ')})`;
  }
  return undefined;
}

function authorOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { name?: unknown }).name === 'string')
    return (value as { name: string }).name;
  return undefined;
}

export function npmPackage(
  content: Buffer,
  path: string,
  layer: number | undefined,
): FoundPackage | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const manifest = parsed as PackageJson;
  const { name, version } = manifest;
  if (typeof name !== 'string' || typeof version !== 'string' || name === '' || version === '')
    return undefined;
  const slash = name.startsWith('@') ? name.indexOf('/') : -1;
  const namespace = slash > 0 ? name.slice(0, slash) : undefined;
  const bare = slash > 0 ? name.slice(slash + 1) : name;
  const license = licenceOf(manifest);
  const author = authorOf(manifest.author);
  return {
    type: 'npm',
    name,
    version,
    purl: purl('npm', namespace, bare, version, undefined),
    ...(license === undefined ? {} : { license }),
    location: path,
    sourceInfo: `acquired package info from installed node module manifest file: /${path}`,
    ...(layer === undefined ? {} : { layer }),
    ...(author === undefined ? {} : { supplier: author }),
    ...(typeof manifest.homepage === 'string' ? { homepage: manifest.homepage } : {}),
    ...(typeof manifest.description === 'string' && manifest.description !== ''
      ? { description: manifest.description }
      : {}),
  };
}
