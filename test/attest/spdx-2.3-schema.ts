/**
 * The SPDX 2.3 JSON document shape, written here as a JSON Schema from the SPDX 2.3 specification
 * (spdx.github.io/spdx-spec/v2.3: clause 6 document creation information, 7 package information,
 * 10 other licensing information, 11 relationships, and annex "SPDX JSON" field names). No npm or
 * Debian package ships SPDX's own spdx-schema.json, and another project's file is not copied
 * into this repository; this transcription is stratum's. It is stricter than SPDX's published
 * schema where the specification is (a closed set of fields, the SPDXID and creator grammars,
 * the date format), so a document it accepts is also one SPDX's schema accepts.
 */

const spdxId = { type: 'string', pattern: '^SPDXRef-[A-Za-z0-9.-]+$' } as const;
const licenseExpression = { type: 'string', minLength: 1 } as const;
const noAssertionOr = (pattern: string) => ({ type: 'string', pattern: `^(?:NOASSERTION|NONE|${pattern})$` });

/** Clause 11.1: every relationship type of SPDX 2.3. */
const RELATIONSHIP_TYPES = [
  'DESCRIBES',
  'DESCRIBED_BY',
  'CONTAINS',
  'CONTAINED_BY',
  'DEPENDS_ON',
  'DEPENDENCY_OF',
  'DEPENDENCY_MANIFEST_OF',
  'BUILD_DEPENDENCY_OF',
  'DEV_DEPENDENCY_OF',
  'OPTIONAL_DEPENDENCY_OF',
  'PROVIDED_DEPENDENCY_OF',
  'TEST_DEPENDENCY_OF',
  'RUNTIME_DEPENDENCY_OF',
  'EXAMPLE_OF',
  'GENERATES',
  'GENERATED_FROM',
  'ANCESTOR_OF',
  'DESCENDANT_OF',
  'VARIANT_OF',
  'DISTRIBUTION_ARTIFACT',
  'PATCH_FOR',
  'PATCH_APPLIED',
  'COPY_OF',
  'FILE_ADDED',
  'FILE_DELETED',
  'FILE_MODIFIED',
  'EXPANDED_FROM_ARCHIVE',
  'DYNAMIC_LINK',
  'STATIC_LINK',
  'DATA_FILE_OF',
  'TEST_CASE_OF',
  'BUILD_TOOL_OF',
  'DEV_TOOL_OF',
  'TEST_OF',
  'TEST_TOOL_OF',
  'DOCUMENTATION_OF',
  'OPTIONAL_COMPONENT_OF',
  'METAFILE_OF',
  'PACKAGE_OF',
  'AMENDS',
  'PREREQUISITE_FOR',
  'HAS_PREREQUISITE',
  'REQUIREMENT_DESCRIPTION_FOR',
  'SPECIFICATION_FOR',
  'OTHER',
] as const;

/** Clause 7.24: primary package purpose. */
const PURPOSES = [
  'APPLICATION',
  'FRAMEWORK',
  'LIBRARY',
  'CONTAINER',
  'OPERATING-SYSTEM',
  'DEVICE',
  'FIRMWARE',
  'SOURCE',
  'ARCHIVE',
  'FILE',
  'INSTALL',
  'OTHER',
] as const;

const externalRef = {
  type: 'object',
  additionalProperties: false,
  required: ['referenceCategory', 'referenceType', 'referenceLocator'],
  properties: {
    // Clause 7.21: the JSON form spells the categories with '-' (and accepts '_').
    referenceCategory: {
      enum: ['SECURITY', 'PACKAGE-MANAGER', 'PACKAGE_MANAGER', 'PERSISTENT-ID', 'PERSISTENT_ID', 'OTHER'],
    },
    referenceType: { type: 'string', minLength: 1 },
    referenceLocator: { type: 'string', minLength: 1, pattern: '^\\S+$' },
    comment: { type: 'string' },
  },
} as const;

const spdxPackage = {
  type: 'object',
  additionalProperties: false,
  required: ['SPDXID', 'name', 'downloadLocation'],
  properties: {
    SPDXID: spdxId,
    name: { type: 'string', minLength: 1 },
    versionInfo: { type: 'string' },
    packageFileName: { type: 'string' },
    // Clause 7.5 / 7.6: NOASSERTION, or "Person: ..." / "Organization: ...".
    supplier: noAssertionOr('(?:Person|Organization): .+'),
    originator: noAssertionOr('(?:Person|Organization): .+'),
    downloadLocation: { type: 'string', minLength: 1 },
    filesAnalyzed: { type: 'boolean' },
    homepage: { type: 'string' },
    sourceInfo: { type: 'string' },
    licenseConcluded: licenseExpression,
    licenseDeclared: licenseExpression,
    licenseComments: { type: 'string' },
    copyrightText: { type: 'string' },
    summary: { type: 'string' },
    description: { type: 'string' },
    comment: { type: 'string' },
    externalRefs: { type: 'array', items: externalRef },
    primaryPackagePurpose: { enum: PURPOSES },
  },
} as const;

export const SPDX_2_3_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'SPDX 2.3 document (stratum transcription)',
  type: 'object',
  additionalProperties: false,
  required: ['spdxVersion', 'dataLicense', 'SPDXID', 'name', 'documentNamespace', 'creationInfo'],
  properties: {
    spdxVersion: { const: 'SPDX-2.3' },
    dataLicense: { const: 'CC0-1.0' },
    SPDXID: { const: 'SPDXRef-DOCUMENT' },
    name: { type: 'string', minLength: 1 },
    // Clause 6.5: a unique absolute URI without a fragment.
    documentNamespace: { type: 'string', pattern: '^[a-z][a-z0-9+.-]*://[^#\\s]+$' },
    creationInfo: {
      type: 'object',
      additionalProperties: false,
      required: ['created', 'creators'],
      properties: {
        // Clause 6.9: YYYY-MM-DDThh:mm:ssZ, UTC.
        created: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$' },
        // Clause 6.8: "Person: ...", "Organization: ..." or "Tool: ...".
        creators: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', pattern: '^(?:Person|Organization|Tool): .+' },
        },
        licenseListVersion: { type: 'string', pattern: '^\\d+\\.\\d+$' },
        comment: { type: 'string' },
      },
    },
    comment: { type: 'string' },
    documentDescribes: { type: 'array', items: spdxId },
    packages: { type: 'array', items: spdxPackage },
    relationships: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['spdxElementId', 'relationshipType', 'relatedSpdxElement'],
        properties: {
          spdxElementId: spdxId,
          relationshipType: { enum: RELATIONSHIP_TYPES },
          relatedSpdxElement: { type: 'string', pattern: '^(?:SPDXRef-[A-Za-z0-9.-]+|NONE|NOASSERTION)$' },
          comment: { type: 'string' },
        },
      },
    },
    // Clause 10: licences not on the SPDX list, referred to as LicenseRef-....
    hasExtractedLicensingInfos: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['licenseId', 'extractedText'],
        properties: {
          licenseId: { type: 'string', pattern: '^LicenseRef-[A-Za-z0-9.-]+$' },
          extractedText: { type: 'string', minLength: 1 },
          name: { type: 'string' },
          comment: { type: 'string' },
          seeAlsos: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
} as const;
