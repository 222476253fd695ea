import { describe, expect, it } from 'vitest';
import { spdxDocument } from '../../src/attest/index.js';
import { expectValidSpdx23 } from './spdx.js';

/** The SPDX writer alone, against stratum's transcription of the SPDX 2.3 JSON shape. */
describe('SPDX 2.3 documents', () => {
  const document = spdxDocument({
    name: 'registry.example/app:1',
    root: { purpose: 'CONTAINER', version: 'sha256:' + 'a'.repeat(64) },
    scan: {
      packages: [
        {
          type: 'deb',
          name: 'libc6',
          version: '2.36-9+deb12u4',
          purl: 'pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12',
          license: 'LGPL-2.1+ and GPL-2+ with GCC exception',
          location: 'var/lib/dpkg/status',
          sourceInfo: 'acquired package info from DPKG DB: var/lib/dpkg/status',
          layer: 0,
          supplier: 'GNU Libc Maintainers <debian-glibc@lists.debian.org>',
        },
        {
          type: 'npm',
          name: '@scope/pkg',
          version: '1.0.0',
          purl: 'pkg:npm/%40scope/pkg@1.0.0',
          license: 'MIT',
          location: 'usr/lib/node_modules/@scope/pkg/package.json',
          sourceInfo: 'acquired package info from installed node module manifest file',
          layer: 1,
          supplier: 'Jane\n  Doe <jane@example.org>',
        },
        {
          type: 'npm',
          name: 'nameless-author',
          version: '0.1.0',
          purl: 'pkg:npm/nameless-author@0.1.0',
          location: 'usr/lib/node_modules/nameless-author/package.json',
          sourceInfo: 'acquired package info from installed node module manifest file',
          supplier: ' <only@example.org> ',
        },
      ],
    },
    layerIds: ['sha256:' + '1'.repeat(64), 'sha256:' + '2'.repeat(64)],
    created: '2023-11-14T22:13:20Z',
    tool: 'stratum-0.1.0',
  });

  it('a document with a deb and an npm package passes, with purls and the layer of each', () => {
    expectValidSpdx23(document);
    const libc = document.packages.find((p) => p.name === 'libc6')!;
    expect(libc.versionInfo).toBe('2.36-9+deb12u4');
    expect(libc.comment).toBe(`layerID: sha256:${'1'.repeat(64)}`);
    // Suppliers on one line, as "Person: name (email)"; none without a name.
    expect(document.packages.find((p) => p.name === '@scope/pkg')!.supplier).toBe(
      'Person: Jane Doe (jane@example.org)',
    );
    expect(document.packages.find((p) => p.name === 'nameless-author')!.supplier).toBeUndefined();
  });

  it('the schema check can fail: a wrong version, a bad SPDXID, an unknown relationship type', () => {
    expect(() => {
      expectValidSpdx23({ ...document, spdxVersion: 'SPDX-2.2' });
    }).toThrow();
    expect(() => {
      expectValidSpdx23({ ...document, packages: [{ ...document.packages[0]!, SPDXID: 'Package 1' }] });
    }).toThrow();
    expect(() => {
      expectValidSpdx23({
        ...document,
        relationships: [{ ...document.relationships[0]!, relationshipType: 'OWNS' }],
      });
    }).toThrow();
  });
});
