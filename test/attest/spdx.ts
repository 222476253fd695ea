import { Ajv } from 'ajv';
import { expect } from 'vitest';
import { SPDX_2_3_SCHEMA } from './spdx-2.3-schema.js';

/** stratum's transcription of the SPDX 2.3 JSON document shape (see spdx-2.3-schema.ts). */
const validate = new Ajv({ allErrors: true, strict: true }).compile(SPDX_2_3_SCHEMA);

/** The document against the SPDX 2.3 schema, and the rules the schema cannot say. */
export function expectValidSpdx23(document: unknown): void {
  const ok = validate(document);
  expect(validate.errors ?? [], 'SPDX 2.3 schema').toEqual([]);
  expect(ok).toBe(true);
  const doc = document as {
    spdxVersion: string;
    dataLicense: string;
    SPDXID: string;
    documentNamespace: string;
    creationInfo: { created: string; creators: string[] };
    packages: { SPDXID: string; name: string; downloadLocation: string; licenseDeclared?: string }[];
    relationships: { spdxElementId: string; relatedSpdxElement: string }[];
    hasExtractedLicensingInfos?: { licenseId: string }[];
  };
  expect(doc.spdxVersion).toBe('SPDX-2.3');
  expect(doc.dataLicense).toBe('CC0-1.0');
  expect(doc.SPDXID).toBe('SPDXRef-DOCUMENT');
  expect(() => new URL(doc.documentNamespace)).not.toThrow();
  // SPDX 2.3 §6.9: YYYY-MM-DDThh:mm:ssZ
  expect(doc.creationInfo.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  expect(doc.creationInfo.creators.every((creator) => /^(Tool|Organization|Person): \S/.test(creator))).toBe(
    true,
  );
  const ids = new Set(doc.packages.map((p) => p.SPDXID));
  expect(ids.size).toBe(doc.packages.length);
  for (const id of ids) expect(id).toMatch(/^SPDXRef-[A-Za-z0-9.-]+$/);
  for (const relationship of doc.relationships) {
    expect(relationship.spdxElementId === 'SPDXRef-DOCUMENT' || ids.has(relationship.spdxElementId)).toBe(
      true,
    );
    expect(ids.has(relationship.relatedSpdxElement)).toBe(true);
  }
  // Every LicenseRef used is defined (§10.1).
  const defined = new Set((doc.hasExtractedLicensingInfos ?? []).map((info) => info.licenseId));
  for (const p of doc.packages)
    for (const ref of p.licenseDeclared?.match(/LicenseRef-[A-Za-z0-9.-]+/g) ?? [])
      expect(defined.has(ref), ref).toBe(true);
}
