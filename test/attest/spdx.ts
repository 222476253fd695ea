import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { expect } from 'vitest';
import { corpusPath, requireCorpus } from '../helpers/corpora.js';

/**
 * The SPDX 2.3 JSON schema (spdx/spdx-spec, branch support/2.3, schemas/spdx-schema.json), read
 * from the shared corpora as the image-spec schemas are: no npm package ships it. Absent
 * outside CI: the schema check is skipped with a message, and the structural checks below still
 * run; under CI=true its absence fails.
 */
const SCHEMA = ['spdx-schema', 'spdx-schema.json'] as const;

let validate: ((document: unknown) => boolean) & { errors?: unknown } = Object.assign(() => true, {});
export const hasSpdxSchema = requireCorpus(...SCHEMA);
if (hasSpdxSchema) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  validate = ajv.compile(JSON.parse(readFileSync(corpusPath(...SCHEMA), 'utf8')) as object);
}

/** The document against the SPDX 2.3 schema, and the rules the schema cannot say. */
export function expectValidSpdx23(document: unknown): void {
  if (hasSpdxSchema) {
    const ok = validate(document);
    expect(validate.errors ?? [], 'SPDX 2.3 schema').toEqual([]);
    expect(ok).toBe(true);
  }
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
