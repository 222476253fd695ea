/**
 * The documents an attestation is made of, typed after their specs (field names as the specs
 * spell them). Plain readonly data: the builders in this folder make them, the JSON is written
 * with JSON.stringify in the field order given here.
 */

/** in-toto Statement v0.1 (https://github.com/in-toto/attestation/blob/main/spec/v0.1.0/statement.md), as BuildKit writes it. */
export const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const PREDICATE_TYPE_ANNOTATION = 'in-toto.io/predicate-type';

export const SLSA_PROVENANCE_V02 = 'https://slsa.dev/provenance/v0.2';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const SPDX_DOCUMENT = 'https://spdx.dev/Document';

/** BuildKit's attestation storage (docs/attestations/attestation-storage.md). */
export const REFERENCE_TYPE_ANNOTATION = 'vnd.docker.reference.type';
export const REFERENCE_DIGEST_ANNOTATION = 'vnd.docker.reference.digest';
export const ATTESTATION_MANIFEST = 'attestation-manifest';

export type DigestSet = Readonly<Record<string, string>>;

export interface Subject {
  readonly name: string;
  readonly digest: DigestSet;
}

export interface Statement<P = unknown> {
  readonly _type: string;
  readonly predicateType: string;
  readonly subject: readonly Subject[];
  readonly predicate: P;
}

/** What a build asks for (`--provenance`, `--sbom`, `--attest`). Absent: not attached. */
export interface AttestationRequest {
  readonly provenance?: ProvenanceRequest;
  readonly sbom?: SbomRequest;
}

export interface ProvenanceRequest {
  /** min: no build-arg values, no Dockerfile source, no steps (safe everywhere); max: all of them. */
  readonly mode: 'min' | 'max';
  readonly version: 'v0.2' | 'v1';
  /** `builder-id=`: the SLSA builder.id; default stratum's own. */
  readonly builderId?: string;
  /** `reproducible=true`, recorded as BuildKit records it. */
  readonly reproducible?: boolean;
}

/**
 * An SBOM is asked for; it has no settings of its own (`generator=`, BuildKit's scanner image, is
 * refused: stratum scans the image itself). What else to scan comes from the build args
 * BUILDKIT_SBOM_SCAN_CONTEXT and BUILDKIT_SBOM_SCAN_STAGE (scan-args.ts).
 */
export type SbomRequest = Readonly<Record<string, never>>;

/** SPDX 2.3 (https://spdx.github.io/spdx-spec/v2.3/), the fields stratum writes. */
export interface SpdxDocument {
  readonly spdxVersion: 'SPDX-2.3';
  readonly dataLicense: 'CC0-1.0';
  readonly SPDXID: 'SPDXRef-DOCUMENT';
  readonly name: string;
  readonly documentNamespace: string;
  readonly creationInfo: {
    readonly created: string;
    readonly creators: readonly string[];
    readonly licenseListVersion?: string;
  };
  readonly packages: readonly SpdxPackage[];
  readonly relationships: readonly SpdxRelationship[];
  readonly hasExtractedLicensingInfos?: readonly {
    readonly licenseId: string;
    readonly extractedText: string;
    readonly name?: string;
  }[];
  readonly documentDescribes?: readonly string[];
}

export interface SpdxPackage {
  readonly SPDXID: string;
  readonly name: string;
  readonly versionInfo?: string;
  readonly downloadLocation: string;
  readonly filesAnalyzed: false;
  readonly supplier?: string;
  readonly originator?: string;
  readonly homepage?: string;
  readonly sourceInfo?: string;
  readonly licenseConcluded: string;
  readonly licenseDeclared: string;
  readonly licenseComments?: string;
  readonly copyrightText: string;
  readonly description?: string;
  readonly comment?: string;
  readonly primaryPackagePurpose?: string;
  readonly externalRefs?: readonly {
    readonly referenceCategory: 'PACKAGE-MANAGER' | 'SECURITY' | 'OTHER' | 'PERSISTENT-ID';
    readonly referenceType: string;
    readonly referenceLocator: string;
  }[];
}

export interface SpdxRelationship {
  readonly spdxElementId: string;
  readonly relationshipType: string;
  readonly relatedSpdxElement: string;
}
