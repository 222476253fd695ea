import type { GoBuildInfo, GoModule } from './go-buildinfo.js';
import type { FoundPackage } from './package.js';
import { purl } from '../purl.js';

/**
 * A Go binary's modules as packages, as Syft lists them: the main module, each dependency the
 * binary links (replacements applied), and the Go standard library at the toolchain's version.
 */
function goPurl(modulePath: string, version: string): string {
  const slash = modulePath.lastIndexOf('/');
  const namespace = slash > 0 ? modulePath.slice(0, slash) : undefined;
  const name = slash > 0 ? modulePath.slice(slash + 1) : modulePath;
  return purl('golang', namespace, name, version === '' ? undefined : version, undefined);
}

export function goPackages(info: GoBuildInfo, path: string, layer: number | undefined): FoundPackage[] {
  const common = {
    type: 'golang' as const,
    location: path,
    sourceInfo: `acquired package info from go module information: /${path}`,
    ...(layer === undefined ? {} : { layer }),
  };
  const module = (mod: GoModule): FoundPackage => ({
    ...common,
    name: mod.path,
    version: mod.version,
    purl: goPurl(mod.path, mod.version === '(devel)' ? '' : mod.version),
  });
  const packages: FoundPackage[] = [];
  if (info.main !== undefined) packages.push(module(info.main));
  for (const dep of info.deps) packages.push(module(dep));
  const stdlibVersion = info.goVersion.replace(/^go/, 'v').split(/\s/)[0]!;
  packages.push({
    ...common,
    name: 'stdlib',
    version: info.goVersion.split(/\s/)[0]!,
    purl: goPurl('stdlib', stdlibVersion),
    license: 'BSD-3-Clause',
  });
  return packages;
}
