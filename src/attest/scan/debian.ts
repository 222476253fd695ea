import { distroQualifier, type Distro } from './os-release.js';
import { parseStanzas, type FoundPackage } from './package.js';
import { purl } from '../purl.js';

/**
 * Debian's package databases: `var/lib/dpkg/status` (packages whose Status ends in
 * `installed`) and distroless images' `var/lib/dpkg/status.d/*` (one file per package, no
 * Status field). Licences come from `usr/share/doc/PKG/copyright` in the machine-readable
 * (DEP-5) form: its `License:` short names, as Syft reads them.
 */

export const DPKG_STATUS = 'var/lib/dpkg/status';
export const DPKG_STATUS_D = 'var/lib/dpkg/status.d/';

export function isDpkgDatabase(path: string): boolean {
  return (
    path === DPKG_STATUS ||
    (path.startsWith(DPKG_STATUS_D) && !path.slice(DPKG_STATUS_D.length).includes('/'))
  );
}

export function isDebianCopyright(path: string): boolean {
  return /^usr\/share\/doc\/[^/]+\/copyright$/.test(path);
}

/** The package name a copyright file belongs to. */
export function copyrightPackage(path: string): string {
  return path.split('/')[3]!;
}

/** DEP-5 `License:` short names (the first line of each field), in order, once each. */
export function copyrightLicences(text: string): string[] {
  if (!/^Format:\s*\S+/m.test(text)) return [];
  const found: string[] = [];
  for (const match of text.matchAll(/^License:[ \t]*([^\n]+)$/gm)) {
    const name = match[1]!.trim();
    if (name !== '' && !found.includes(name)) found.push(name);
  }
  return found;
}

export interface DpkgEntry {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
  /** The source package when it differs (`glibc` for libc6), without its version. */
  readonly source?: string;
  readonly maintainer?: string;
  readonly homepage?: string;
  readonly description?: string;
}

export function parseDpkgDatabase(text: string, path: string): DpkgEntry[] {
  const entries: DpkgEntry[] = [];
  const statusFile = path === DPKG_STATUS;
  for (const stanza of parseStanzas(text)) {
    const name = stanza.get('Package');
    const version = stanza.get('Version');
    if (name === undefined || version === undefined) continue;
    // `install ok installed`; `deinstall ok config-files` is a removed package's leftovers.
    if (statusFile && stanza.get('Status')?.split(/\s+/)[2] !== 'installed') continue;
    const source = stanza.get('Source')?.split(/\s+/)[0];
    const description = stanza.get('Description')?.split('\n')[0];
    entries.push({
      name,
      version,
      architecture: stanza.get('Architecture') ?? '',
      ...(source !== undefined && source !== name ? { source } : {}),
      ...(stanza.has('Maintainer') ? { maintainer: stanza.get('Maintainer')! } : {}),
      ...(stanza.has('Homepage') ? { homepage: stanza.get('Homepage')! } : {}),
      ...(description ? { description } : {}),
    });
  }
  return entries;
}

export function dpkgKey(entry: DpkgEntry): string {
  return `${entry.name}\0${entry.version}\0${entry.architecture}`;
}

export function debPackage(
  entry: DpkgEntry,
  location: string,
  distro: Distro | undefined,
  licences: readonly string[] | undefined,
  layer: number | undefined,
): FoundPackage {
  const qualifiers: Record<string, string> = {};
  if (entry.architecture !== '') qualifiers['arch'] = entry.architecture;
  const distroName = distroQualifier(distro);
  if (distroName !== undefined) qualifiers['distro'] = distroName;
  if (entry.source !== undefined) qualifiers['upstream'] = entry.source;
  return {
    type: 'deb',
    name: entry.name,
    version: entry.version,
    purl: purl('deb', distro?.id ?? 'debian', entry.name, entry.version, qualifiers),
    ...(licences !== undefined && licences.length > 0 ? { license: licences.join(' AND ') } : {}),
    location,
    sourceInfo: `acquired package info from DPKG DB: /${location}`,
    ...(layer === undefined ? {} : { layer }),
    ...(entry.maintainer === undefined ? {} : { supplier: entry.maintainer }),
    ...(entry.homepage === undefined ? {} : { homepage: entry.homepage }),
    ...(entry.description === undefined ? {} : { description: entry.description }),
  };
}
