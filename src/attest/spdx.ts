import { createHash } from 'node:crypto';
import type { FoundPackage, ScanResult } from './scan/index.js';
import { spdxLicence } from './licence.js';
import type { SpdxDocument, SpdxPackage, SpdxRelationship } from './types.js';

/**
 * An SPDX 2.3 JSON document for a scan, shaped as BuildKit's Syft scanner writes its SPDX
 * (a root package for what was scanned, DESCRIBES from the document, CONTAINS to each package,
 * each package's purl as a PACKAGE-MANAGER reference, the layer that added it as the
 * `layerID:` comment) so docker scout, trivy and grype read it as they read BuildKit's.
 *
 * Written by hand: no npm library models SPDX 2.x documents (only licence expressions, which
 * licence.ts uses). The document is a function of its inputs: its namespace is a digest of them,
 * not a random UUID, so a reproducible build gives the same SBOM.
 */

export interface SpdxInput {
  /** What was scanned, as the document names it (`docker.io/library/app:1`, the context dir). */
  readonly name: string;
  /** The root package's purpose and version: an image manifest digest, or nothing for a directory. */
  readonly root: {
    readonly purpose: 'CONTAINER' | 'SOURCE';
    readonly version?: string;
    readonly purl?: string;
  };
  readonly scan: ScanResult;
  /** Layer index → DiffID, for the `layerID:` comments. */
  readonly layerIds?: readonly string[];
  /** RFC 3339 time, whole seconds, UTC (SOURCE_DATE_EPOCH or now). */
  readonly created: string;
  /** `stratum-0.1.0` */
  readonly tool: string;
}

function spdxId(prefix: string, text: string): string {
  const readable = text
    .replace(/[^A-Za-z0-9.-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
  return `SPDXRef-${prefix}-${readable}-${hash}`;
}

/** SPDX's `Person: name (email)` form of a maintainer such as `Name <mail@example.org>`. */
/** SPDX 2.3 §7.5 "Person: name (email)", on one line; undefined when no name is left. */
function person(text: string): string | undefined {
  const line = text.replace(/\s+/g, ' ').trim();
  const match = /^(.*?)\s*<([^>]*)>$/.exec(line);
  const name = match === null ? line : match[1]!.trim();
  if (name === '') return undefined;
  return match === null ? `Person: ${name}` : `Person: ${name} (${match[2]!.trim()})`;
}

export function spdxDocument(input: SpdxInput): SpdxDocument {
  const digest = createHash('sha256')
    .update(JSON.stringify([input.name, input.root, input.scan, input.layerIds ?? []]))
    .digest('hex');
  const rootId = spdxId('DocumentRoot', input.name);
  const references = new Map<string, string>();
  const used = new Set<string>();
  const packages: SpdxPackage[] = [
    {
      SPDXID: rootId,
      name: input.name,
      ...(input.root.version === undefined ? {} : { versionInfo: input.root.version }),
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      primaryPackagePurpose: input.root.purpose,
      ...(input.root.purl === undefined
        ? {}
        : {
            externalRefs: [
              {
                referenceCategory: 'PACKAGE-MANAGER' as const,
                referenceType: 'purl',
                referenceLocator: input.root.purl,
              },
            ],
          }),
    },
  ];
  const relationships: SpdxRelationship[] = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: rootId },
  ];
  for (const found of input.scan.packages) {
    let id = spdxId('Package', `${found.type}-${found.name}-${found.version}-${found.location}`);
    for (let n = 2; used.has(id); n++) id = `${id}-${n}`;
    used.add(id);
    packages.push(spdxPackage(found, id, input.layerIds, references));
    relationships.push({ spdxElementId: rootId, relationshipType: 'CONTAINS', relatedSpdxElement: id });
  }
  const extracted = [...references.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([licenseId, extractedText]) => ({ licenseId, extractedText }));
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: input.name,
    documentNamespace: `https://spdx.org/spdxdocs/${input.tool}/${encodeURIComponent(input.name)}-${digest}`,
    creationInfo: {
      created: input.created,
      creators: ['Organization: stratum', `Tool: ${input.tool}`],
    },
    documentDescribes: [rootId],
    packages,
    relationships,
    ...(extracted.length === 0 ? {} : { hasExtractedLicensingInfos: extracted }),
  };
}

function spdxPackage(
  found: FoundPackage,
  id: string,
  layerIds: readonly string[] | undefined,
  references: Map<string, string>,
): SpdxPackage {
  const licence = found.license === undefined ? undefined : spdxLicence(found.license);
  for (const reference of licence?.references ?? [])
    references.set(reference.licenseId, reference.extractedText);
  const layerId = found.layer === undefined ? undefined : layerIds?.[found.layer];
  return {
    SPDXID: id,
    name: found.name,
    versionInfo: found.version,
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    ...(found.supplier === undefined || person(found.supplier) === undefined
      ? {}
      : { supplier: person(found.supplier)! }),
    ...(found.homepage === undefined ? {} : { homepage: found.homepage }),
    sourceInfo: found.sourceInfo,
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: licence?.expression ?? 'NOASSERTION',
    ...(licence?.declared === undefined ? {} : { licenseComments: `declared as: ${licence.declared}` }),
    copyrightText: 'NOASSERTION',
    ...(found.description === undefined ? {} : { description: found.description }),
    // Syft's form, which scanners that map packages to layers read.
    ...(layerId === undefined ? {} : { comment: `layerID: ${layerId}` }),
    externalRefs: [
      { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: found.purl },
    ],
  };
}
