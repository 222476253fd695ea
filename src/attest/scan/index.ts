import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageSource } from '../../oci/image.js';
import { APK_INSTALLED, apkKey, apkPackage, parseApkInstalled } from './alpine.js';
import {
  DPKG_STATUS,
  copyrightLicences,
  copyrightPackage,
  debPackage,
  dpkgKey,
  isDebianCopyright,
  isDpkgDatabase,
  parseDpkgDatabase,
} from './debian.js';
import { goBuildInfoReader, type GoBuildInfo } from './go-buildinfo.js';
import { goPackages } from './golang.js';
import { walkImage, type FileScanner, type KeptFile, type Want } from './image-files.js';
import { isNpmManifest, npmPackage } from './npm.js';
import { parseOsRelease, type Distro } from './os-release.js';
import type { FoundPackage } from './package.js';
import { isPythonMetadata, pythonPackage } from './python.js';

export type { FoundPackage } from './package.js';
export type { Distro } from './os-release.js';

/**
 * The packages of an image's final filesystem, each with the layer that added it; or of a
 * directory (the build context, for BUILDKIT_SBOM_SCAN_CONTEXT). The scanners are Syft's
 * catalogers' sources, read here without Syft: dpkg (status and status.d), apk, npm
 * node_modules manifests, Python dist-info/egg-info metadata, Go build info in ELF binaries.
 */
export interface ScanResult {
  readonly distro?: Distro;
  /** Sorted by type, name, version and location: one filesystem gives one list. */
  readonly packages: readonly FoundPackage[];
}

const MiB = 1024 * 1024;
const OS_RELEASE = ['etc/os-release', 'usr/lib/os-release'];

const wants: FileScanner = {
  want(path, mode, size): Want | undefined {
    if (OS_RELEASE.includes(path)) return { kind: 'content', limit: 64 * 1024 };
    if (isDpkgDatabase(path) || path === APK_INSTALLED) return { kind: 'content', limit: 256 * MiB };
    if (isDebianCopyright(path) || isNpmManifest(path) || isPythonMetadata(path))
      return { kind: 'content', limit: 4 * MiB };
    // Executables big enough to be a Go program (the smallest is about a megabyte).
    if ((mode & 0o111) !== 0 && (size === undefined || size >= 64 * 1024)) return { kind: 'executable' };
    return undefined;
  },
  executable: goBuildInfoReader,
};

/** Which layer first listed each package of a database rewritten layer after layer. */
class FirstSeen {
  private readonly layerOf = new Map<string, number>();
  private previous = new Set<string>();

  update(keys: readonly string[], layer: number): void {
    const current = new Set(keys);
    for (const key of current) if (!this.previous.has(key)) this.layerOf.set(key, layer);
    for (const key of this.previous) if (!current.has(key)) this.layerOf.delete(key);
    this.previous = current;
  }

  layer(key: string): number | undefined {
    return this.layerOf.get(key);
  }
}

export async function scanImage(image: ImageSource, signal?: AbortSignal): Promise<ScanResult> {
  const dpkg = new FirstSeen();
  const apk = new FirstSeen();
  const files = await walkImage(
    image,
    wants,
    (visit) => {
      for (const file of visit.written) {
        if (file.content === undefined) continue;
        if (file.path === DPKG_STATUS)
          dpkg.update(parseDpkgDatabase(file.content.toString('utf8'), file.path).map(dpkgKey), visit.index);
        else if (file.path === APK_INSTALLED)
          apk.update(parseApkInstalled(file.content.toString('utf8')).map(apkKey), visit.index);
      }
    },
    signal,
  );
  const osRelease = OS_RELEASE.map((path) => files.at(path)).find((file) => file?.content !== undefined);
  const distro = osRelease === undefined ? undefined : parseOsRelease(osRelease.content!.toString('utf8'));
  const packages = packagesOf(files.files, distro, {
    dpkgLayer: (key) => dpkg.layer(key),
    apkLayer: (key) => apk.layer(key),
  });
  return { ...(distro === undefined ? {} : { distro }), packages };
}

interface LayerLookups {
  readonly dpkgLayer: (key: string) => number | undefined;
  readonly apkLayer: (key: string) => number | undefined;
}

function packagesOf(
  files: readonly KeptFile[],
  distro: Distro | undefined,
  layers: LayerLookups | undefined,
): FoundPackage[] {
  const licences = new Map<string, string[]>();
  for (const file of files)
    if (file.content !== undefined && isDebianCopyright(file.path))
      licences.set(copyrightPackage(file.path), copyrightLicences(file.content.toString('utf8')));
  const layerOf = (file: KeptFile): number | undefined => (layers === undefined ? undefined : file.layer);
  const packages: FoundPackage[] = [];
  for (const file of files) {
    if (file.extracted !== undefined) {
      packages.push(...goPackages(file.extracted as GoBuildInfo, file.path, layerOf(file)));
      continue;
    }
    if (file.content === undefined) continue;
    const text = (): string => file.content!.toString('utf8');
    if (isDpkgDatabase(file.path)) {
      for (const entry of parseDpkgDatabase(text(), file.path)) {
        // dpkg names a multi-arch package's doc directory without the arch.
        const layer =
          file.path === DPKG_STATUS ? (layers?.dpkgLayer(dpkgKey(entry)) ?? layerOf(file)) : layerOf(file);
        packages.push(debPackage(entry, file.path, distro, licences.get(entry.name), layer));
      }
    } else if (file.path === APK_INSTALLED) {
      for (const entry of parseApkInstalled(text()))
        packages.push(apkPackage(entry, distro, layers?.apkLayer(apkKey(entry)) ?? layerOf(file)));
    } else if (isNpmManifest(file.path)) {
      const found = npmPackage(file.content, file.path, layerOf(file));
      if (found !== undefined) packages.push(found);
    } else if (isPythonMetadata(file.path)) {
      const found = pythonPackage(file.content, file.path, layerOf(file));
      if (found !== undefined) packages.push(found);
    }
  }
  const text = (p: FoundPackage): string => `${p.type}\0${p.name}\0${p.version}\0${p.location}`;
  return packages.sort((a, b) => (text(a) < text(b) ? -1 : text(a) > text(b) ? 1 : 0));
}

/**
 * A directory on disk (the build context): the same scanners, no layers. `.git` is skipped; a
 * symlink is not followed (it may point anywhere on the machine).
 */
export async function scanDirectory(dir: string, signal?: AbortSignal): Promise<ScanResult> {
  const kept: KeptFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    signal?.throwIfAborted();
    const names = (await readdir(join(dir, relative))).sort();
    for (const name of names) {
      if (relative === '' && name === '.git') continue;
      const path = relative === '' ? name : `${relative}/${name}`;
      const info = await lstat(join(dir, path));
      if (info.isDirectory()) {
        await walk(path);
        continue;
      }
      if (!info.isFile()) continue;
      const want = wants.want(path, info.mode, info.size);
      if (want === undefined) continue;
      if (want.kind === 'content') {
        if (info.size <= want.limit) kept.push({ path, layer: 0, content: await readFile(join(dir, path)) });
        continue;
      }
      const reader = goBuildInfoReader();
      for await (const chunk of createReadStream(join(dir, path))) reader.push(chunk as Buffer);
      const extracted = reader.end();
      if (extracted !== undefined) kept.push({ path, layer: 0, extracted });
    }
  };
  await walk('');
  const osRelease = kept.find((file) => OS_RELEASE.includes(file.path));
  const distro =
    osRelease?.content === undefined ? undefined : parseOsRelease(osRelease.content.toString('utf8'));
  return { ...(distro === undefined ? {} : { distro }), packages: packagesOf(kept, distro, undefined) };
}
