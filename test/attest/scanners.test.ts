import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseApkInstalled } from '../../src/attest/scan/alpine.js';
import { copyrightLicences, parseDpkgDatabase } from '../../src/attest/scan/debian.js';
import { goBuildInfoReader, parseBuildInfoBlob } from '../../src/attest/scan/go-buildinfo.js';
import { goPackages } from '../../src/attest/scan/golang.js';
import { isNpmManifest, npmPackage } from '../../src/attest/scan/npm.js';
import { distroQualifier, parseOsRelease } from '../../src/attest/scan/os-release.js';
import { isPythonMetadata, pythonPackage } from '../../src/attest/scan/python.js';
import { spdxLicence } from '../../src/attest/licence.js';
import { requireTool } from '../helpers/system.js';

const STATUS = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
Homepage: https://www.gnu.org/software/libc/libc.html

Package: oldthing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: bash
Essential: yes
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2
`;

describe('dpkg', () => {
  it('status: installed packages only, with the source package', () => {
    const entries = parseDpkgDatabase(STATUS, 'var/lib/dpkg/status');
    expect(entries.map((entry) => entry.name)).toEqual(['libc6', 'bash']);
    expect(entries[0]).toMatchObject({
      version: '2.36-9+deb12u4',
      architecture: 'amd64',
      source: 'glibc',
      description: 'GNU C Library: Shared libraries',
    });
    expect(entries[1]!.source).toBeUndefined();
  });

  it('status.d (distroless): one package per file, no Status field', () => {
    const entries = parseDpkgDatabase(
      'Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n',
      'var/lib/dpkg/status.d/base',
    );
    expect(entries).toEqual([{ name: 'base-files', version: '12.4+deb12u5', architecture: 'amd64' }]);
  });

  it('copyright files: DEP-5 License short names, once each; a free-form file gives none', () => {
    const dep5 = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: x

Files: *
License: GPL-2+

Files: lib/*
License: Expat

Files: more/*
License: GPL-2+
`;
    expect(copyrightLicences(dep5)).toEqual(['GPL-2+', 'Expat']);
    expect(copyrightLicences('This package was debianized by someone.\nLicense: GPL\n')).toEqual([]);
  });
});

describe('os-release', () => {
  it('ID and VERSION_ID make the purl distro qualifier', () => {
    const distro = parseOsRelease(
      'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    );
    expect(distro).toEqual({ id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
    expect(distroQualifier(distro)).toBe('debian-12');
    expect(distroQualifier(parseOsRelease('ID=debian\nVERSION_CODENAME=trixie\n'))).toBe('debian');
  });
});

describe('apk', () => {
  it('the installed db, record by record', () => {
    const db = `C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nm:Timo <timo@alpinelinux.org>\nU:https://musl.libc.org/\nT:the musl c library\n\nP:busybox-binsh\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n`;
    expect(parseApkInstalled(db)).toEqual([
      {
        name: 'musl',
        version: '1.2.4-r2',
        architecture: 'x86_64',
        license: 'MIT',
        origin: 'musl',
        maintainer: 'Timo <timo@alpinelinux.org>',
        url: 'https://musl.libc.org/',
        description: 'the musl c library',
      },
      {
        name: 'busybox-binsh',
        version: '1.36.1-r15',
        architecture: 'x86_64',
        license: 'GPL-2.0-only',
        origin: 'busybox',
      },
    ]);
  });
});

describe('npm', () => {
  it('installed manifests only, scoped names, the old licence forms', () => {
    expect(isNpmManifest('usr/lib/node_modules/npm/package.json')).toBe(true);
    expect(isNpmManifest('app/node_modules/@babel/core/package.json')).toBe(true);
    expect(isNpmManifest('app/node_modules/a/node_modules/b/package.json')).toBe(true);
    expect(isNpmManifest('app/package.json')).toBe(false);
    expect(isNpmManifest('app/node_modules/a/lib/package.json')).toBe(false);
    const scoped = npmPackage(
      Buffer.from(JSON.stringify({ name: '@babel/core', version: '7.24.0', license: { type: 'MIT' } })),
      'app/node_modules/@babel/core/package.json',
      2,
    );
    expect(scoped).toMatchObject({ purl: 'pkg:npm/%40babel/core@7.24.0', license: 'MIT', layer: 2 });
    const old = npmPackage(
      Buffer.from(
        JSON.stringify({ name: 'x', version: '1.0.0', licenses: [{ type: 'MIT' }, { type: 'Apache-2.0' }] }),
      ),
      'node_modules/x/package.json',
      0,
    );
    expect(old?.license).toBe('(MIT OR Apache-2.0)');
    expect(npmPackage(Buffer.from('{not json'), 'node_modules/y/package.json', 0)).toBeUndefined();
  });
});

describe('python', () => {
  it('dist-info METADATA and egg-info PKG-INFO; License-Expression, License, then classifiers', () => {
    expect(isPythonMetadata('usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA')).toBe(true);
    expect(isPythonMetadata('usr/lib/python3/dist-packages/six-1.16.0.egg-info')).toBe(true);
    expect(isPythonMetadata('usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO')).toBe(true);
    const metadata = `Metadata-Version: 2.1\nName: Requests_OAuth\nVersion: 2.31.0\nSummary: Python HTTP for Humans.\nHome-page: https://requests.readthedocs.io\nLicense: Apache 2.0\nClassifier: License :: OSI Approved :: Apache Software License\n\nLong: description: here\n`;
    expect(
      pythonPackage(Buffer.from(metadata), 'site/Requests_OAuth-2.31.0.dist-info/METADATA', 1),
    ).toMatchObject({
      name: 'Requests_OAuth',
      version: '2.31.0',
      purl: 'pkg:pypi/requests-oauth@2.31.0',
      license: 'Apache 2.0',
      homepage: 'https://requests.readthedocs.io',
    });
    const classifiers = `Name: six\nVersion: 1.16.0\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: MIT License\n`;
    expect(pythonPackage(Buffer.from(classifiers), 'x/six-1.16.0.egg-info', 0)?.license).toBe('MIT License');
  });
});

/** A Go 1.18+ build-info blob as the linker lays it out (debug/buildinfo). */
function buildInfoBlob(goVersion: string, modinfo: string): Buffer {
  const varint = (n: number): Buffer => {
    const bytes: number[] = [];
    while (n >= 0x80) {
      bytes.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    bytes.push(n);
    return Buffer.from(bytes);
  };
  const header = Buffer.alloc(32);
  header.write('\xff Go buildinf:', 0, 'latin1');
  header[14] = 8;
  header[15] = 2;
  const sentinel = Buffer.alloc(16, 0xaa);
  const info = Buffer.concat([sentinel, Buffer.from(modinfo), sentinel]);
  return Buffer.concat([header, varint(goVersion.length), Buffer.from(goVersion), varint(info.length), info]);
}

describe('Go build info', () => {
  const modinfo =
    'path\texample.com/app/cmd/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/spf13/cobra\tv1.8.0\th1:abc=\ndep\tgolang.org/x/sys\tv0.1.0\th1:def=\n=>\tgolang.org/x/sys\tv0.2.0\th1:ghi=\nbuild\t-compiler=gc\n';

  it('the blob: Go version, main module, dependencies with replacements applied', () => {
    const info = parseBuildInfoBlob(buildInfoBlob('go1.22.1', modinfo));
    expect(info).toEqual({
      goVersion: 'go1.22.1',
      path: 'example.com/app/cmd/app',
      main: { path: 'example.com/app', version: '(devel)' },
      deps: [
        { path: 'github.com/spf13/cobra', version: 'v1.8.0', sum: 'h1:abc=' },
        { path: 'golang.org/x/sys', version: 'v0.2.0', sum: 'h1:ghi=' },
      ],
    });
    const packages = goPackages(info!, 'usr/bin/app', 3);
    expect(packages.map((p) => p.purl)).toEqual([
      'pkg:golang/example.com/app',
      'pkg:golang/github.com/spf13/cobra@v1.8.0',
      'pkg:golang/golang.org/x/sys@v0.2.0',
      'pkg:golang/stdlib@v1.22.1',
    ]);
  });

  it('streamed in small chunks, with the magic string earlier in the file as Go tools carry it', () => {
    const decoy = Buffer.concat([Buffer.from('\xff Go buildinf:', 'latin1'), Buffer.alloc(40, 0)]);
    const file = Buffer.concat([
      Buffer.from([0x7f, 0x45, 0x4c, 0x46]),
      Buffer.alloc(1000, 1),
      decoy,
      Buffer.alloc(5000, 2),
      buildInfoBlob('go1.21.0', modinfo),
      Buffer.alloc(3000, 3),
    ]);
    for (const size of [1, 7, 13, 4096]) {
      const reader = goBuildInfoReader();
      for (let at = 0; at < file.length; at += size) reader.push(file.subarray(at, at + size));
      expect(reader.end()?.goVersion, `chunks of ${size}`).toBe('go1.21.0');
    }
  });

  it('not ELF, or no build info: nothing', () => {
    const script = goBuildInfoReader();
    script.push(Buffer.concat([Buffer.from('#!/bin/sh\n'), buildInfoBlob('go1.22.1', modinfo)]));
    expect(script.end()).toBeUndefined();
  });

  it.skipIf(!requireTool('docker-registry', 'docker-registry') || !requireTool('strings', 'binutils'))(
    "a real Go binary (Debian's docker-registry): the version and path `strings` finds",
    async () => {
      const binary = execFileSync('readlink', ['-f', '/usr/bin/docker-registry'], {
        encoding: 'utf8',
      }).trim();
      const strings = execFileSync('strings', [binary], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      const reader = goBuildInfoReader();
      for await (const chunk of createReadStream(binary, { highWaterMark: 65_536 }))
        reader.push(chunk as Buffer);
      const info = reader.end();
      expect(info).toBeDefined();
      expect(strings.split('\n')).toContain(info!.goVersion);
      expect(strings).toContain(`path\t${info!.path}\n`);
    },
  );
});

describe('licences as SPDX expressions', () => {
  it('valid expressions stay; Debian and GNU short names map exactly; the rest is a LicenseRef with its text', () => {
    expect(spdxLicence('MIT OR Apache-2.0')).toEqual({ expression: 'MIT OR Apache-2.0', references: [] });
    expect(spdxLicence('GPL-2+').expression).toBe('GPL-2.0-or-later');
    expect(spdxLicence('GPL-2').expression).toBe('GPL-2.0-only');
    expect(spdxLicence('Expat').expression).toBe('MIT');
    expect(spdxLicence('BSD-3-clause').expression).toBe('BSD-3-Clause');
    expect(spdxLicence('GPL-2+ AND Expat AND GPL-2+').expression).toBe('GPL-2.0-or-later AND MIT');
    const other = spdxLicence('BSD-4-clause-UC and MIT-like');
    expect(other.expression).toBe('BSD-4-Clause-UC AND LicenseRef-MIT-like');
    expect(other.references).toEqual([{ licenseId: 'LicenseRef-MIT-like', extractedText: 'MIT-like' }]);
    expect(other.declared).toBe('BSD-4-clause-UC and MIT-like');
  });
});

const DEBIAN_STATUS = '/var/tmp/stratum-test-debian/rootfs/var/lib/dpkg/status';
describe.skipIf(!existsSync(DEBIAN_STATUS))('a real Debian status file', () => {
  it("every installed package dpkg-query lists, with dpkg-query's version", () => {
    const listed = execFileSync(
      'dpkg-query',
      [
        '--admindir',
        '/var/tmp/stratum-test-debian/rootfs/var/lib/dpkg',
        '-W',
        '-f',
        '${db:Status-Abbrev}|${Package}|${Version}\n',
      ],
      { encoding: 'utf8' },
    )
      .split('\n')
      .filter((line) => line.startsWith('ii'))
      .map((line) => line.split('|').slice(1).join(' '))
      .sort();
    const parsed = parseDpkgDatabase(readFileSync(DEBIAN_STATUS, 'utf8'), 'var/lib/dpkg/status')
      .map((entry) => `${entry.name} ${entry.version}`)
      .sort();
    expect(parsed).toEqual(listed);
    expect(parsed.some((line) => line.startsWith('libc6 '))).toBe(true);
  });
});
