import { distroQualifier, type Distro } from './os-release.js';
import type { FoundPackage } from './package.js';
import { purl } from '../purl.js';

/**
 * Alpine's installed database, `lib/apk/db/installed`: one blank-line separated record per
 * package of `K:value` lines (P name, V version, A arch, L licence, o origin, m maintainer,
 * U url, T description), as apk-tools writes it.
 */

export const APK_INSTALLED = 'lib/apk/db/installed';

export interface ApkEntry {
  readonly name: string;
  readonly version: string;
  readonly architecture?: string;
  readonly license?: string;
  readonly origin?: string;
  readonly maintainer?: string;
  readonly url?: string;
  readonly description?: string;
}

export function parseApkInstalled(text: string): ApkEntry[] {
  const entries: ApkEntry[] = [];
  for (const record of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of record.split('\n')) {
      if (line.length >= 2 && line[1] === ':' && !fields.has(line[0]!)) fields.set(line[0]!, line.slice(2));
    }
    const name = fields.get('P');
    const version = fields.get('V');
    if (name === undefined || version === undefined) continue;
    const pick = (key: string): string | undefined => {
      const value = fields.get(key);
      return value === undefined || value === '' ? undefined : value;
    };
    const optional = {
      architecture: pick('A'),
      license: pick('L'),
      origin: pick('o'),
      maintainer: pick('m'),
      url: pick('U'),
      description: pick('T'),
    };
    entries.push({
      name,
      version,
      ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
    });
  }
  return entries;
}

export function apkKey(entry: ApkEntry): string {
  return `${entry.name}\0${entry.version}\0${entry.architecture ?? ''}`;
}

export function apkPackage(
  entry: ApkEntry,
  distro: Distro | undefined,
  layer: number | undefined,
): FoundPackage {
  const qualifiers: Record<string, string> = {};
  if (entry.architecture !== undefined) qualifiers['arch'] = entry.architecture;
  const distroName = distroQualifier(distro);
  if (distroName !== undefined) qualifiers['distro'] = distroName;
  if (entry.origin !== undefined && entry.origin !== entry.name) qualifiers['upstream'] = entry.origin;
  return {
    type: 'apk',
    name: entry.name,
    version: entry.version,
    purl: purl('apk', distro?.id ?? 'alpine', entry.name, entry.version, qualifiers),
    ...(entry.license === undefined ? {} : { license: entry.license }),
    location: APK_INSTALLED,
    sourceInfo: `acquired package info from APK DB: /${APK_INSTALLED}`,
    ...(layer === undefined ? {} : { layer }),
    ...(entry.maintainer === undefined ? {} : { supplier: entry.maintainer }),
    ...(entry.url === undefined ? {} : { homepage: entry.url }),
    ...(entry.description === undefined ? {} : { description: entry.description }),
  };
}
