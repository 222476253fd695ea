import { StratumError } from '../errors.js';
import type { AttestationRequest, ProvenanceRequest, SbomRequest } from './types.js';

/**
 * buildx's attestation flags, as buildx reads them (util/buildflags/attests.go):
 * - `--provenance=true|false|<attrs>` is `--attest type=provenance,disabled=!b` or
 *   `--attest type=provenance,<attrs>`; `--sbom` likewise;
 * - `--attest type=T,k=v,...` repeats; a later one of the same type replaces an earlier one,
 *   and `disabled=true` turns that type off;
 * - `--provenance=true` (no mode) is BuildKit's default mode, `max` (solver/llbsolver/provenance.go),
 *   whatever some documentation says; `version` defaults to `v0.2` here (BuildKit's default before
 *   it moved to v1).
 * Nothing is attached unless asked for: see docs/attestations.md for why stratum has no default
 * provenance (buildx attaches `mode=min` when its driver can hold attestations).
 */

export interface AttestationFlags {
  /** `--provenance VALUE` */
  readonly provenance?: string;
  /** `--sbom VALUE` */
  readonly sbom?: string;
  /** `--attest VALUE`… */
  readonly attest?: readonly string[];
}

/** One `type=...` attestation in buildx's canonical form. */
interface Attest {
  readonly type: string;
  readonly disabled: boolean;
  readonly attrs: ReadonlyMap<string, string>;
  readonly flag: string;
}

function parseBool(text: string): boolean | undefined {
  const value = text.trim().toLowerCase();
  if (value === 'true' || value === '1' || value === 't') return true;
  if (value === 'false' || value === '0' || value === 'f') return false;
  return undefined;
}

/** `--provenance=VALUE` as `--attest` would have it (buildx's CanonicalizeAttest). */
function canonical(type: string, flag: string, value: string): string {
  const bool = parseBool(value);
  if (bool !== undefined) return `type=${type},disabled=${!bool}`;
  // buildx also takes a bare `min`/`max` for provenance, as a mode.
  if (type === 'provenance' && (value === 'min' || value === 'max')) return `type=${type},mode=${value}`;
  if (value === '') throw new StratumError('USAGE', `${flag}: expected true, false or KEY=VALUE,...`);
  return `type=${type},${value}`;
}

function parseAttest(text: string, flag: string): Attest {
  let type: string | undefined;
  let disabled = false;
  const attrs = new Map<string, string>();
  for (const field of text.split(',')) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw new StratumError('USAGE', `${flag}: "${field}" is not KEY=VALUE`);
    const key = field.slice(0, eq).trim().toLowerCase();
    const value = field.slice(eq + 1);
    if (key === 'type') type = value;
    else if (key === 'disabled') {
      const bool = parseBool(value);
      if (bool === undefined)
        throw new StratumError('USAGE', `${flag}: disabled=${value} is not true or false`);
      disabled = bool;
    } else attrs.set(field.slice(0, eq).trim(), value);
  }
  if (type === undefined || type === '')
    throw new StratumError('USAGE', `${flag}: attestation type not specified (type=provenance or type=sbom)`);
  if (type !== 'provenance' && type !== 'sbom')
    throw new StratumError('USAGE', `${flag}: unknown attestation type "${type}" (provenance or sbom)`);
  return { type, disabled, attrs, flag };
}

function refuseUnknown(attest: Attest, known: readonly string[]): void {
  for (const key of attest.attrs.keys()) {
    if (!known.includes(key))
      throw new StratumError(
        'USAGE',
        `${attest.flag}: unknown key "${key}" for type=${attest.type} (known: ${known.join(', ')})`,
      );
  }
}

function provenanceRequest(attest: Attest): ProvenanceRequest {
  refuseUnknown(attest, ['mode', 'version', 'builder-id', 'reproducible', 'inline-only', 'filename']);
  const mode = attest.attrs.get('mode') ?? 'max';
  // BuildKit takes `full` as a synonym of max.
  const normalisedMode = mode === 'full' ? 'max' : mode;
  if (normalisedMode !== 'min' && normalisedMode !== 'max')
    throw new StratumError('USAGE', `${attest.flag}: mode=${mode} is not min or max`);
  const version = attest.attrs.get('version') ?? 'v0.2';
  if (version !== 'v0.2' && version !== 'v1')
    throw new StratumError('USAGE', `${attest.flag}: version=${version} is not v0.2 or v1`);
  const reproducibleText = attest.attrs.get('reproducible');
  const reproducible = reproducibleText === undefined ? undefined : parseBool(reproducibleText);
  if (reproducibleText !== undefined && reproducible === undefined)
    throw new StratumError('USAGE', `${attest.flag}: reproducible=${reproducibleText} is not true or false`);
  const builderId = attest.attrs.get('builder-id');
  return {
    mode: normalisedMode,
    version,
    ...(builderId === undefined ? {} : { builderId }),
    ...(reproducible === undefined ? {} : { reproducible }),
  };
}

function sbomRequest(attest: Attest): SbomRequest {
  refuseUnknown(attest, ['generator', 'scan-context', 'scan-stage']);
  if (attest.attrs.has('generator'))
    throw new StratumError(
      'UNSUPPORTED',
      `${attest.flag}: generator= names a BuildKit scanner image; stratum scans the image itself (leave generator out)`,
    );
  return {};
}

/** The attestations a build asks for; `{}` when none (the default). */
export function parseAttestationFlags(flags: AttestationFlags): AttestationRequest {
  const all: Attest[] = [];
  for (const value of flags.attest ?? []) all.push(parseAttest(value, `--attest ${value}`));
  if (flags.provenance !== undefined)
    all.push(
      parseAttest(
        canonical('provenance', `--provenance ${flags.provenance}`, flags.provenance),
        `--provenance ${flags.provenance}`,
      ),
    );
  if (flags.sbom !== undefined)
    all.push(parseAttest(canonical('sbom', `--sbom ${flags.sbom}`, flags.sbom), `--sbom ${flags.sbom}`));
  // buildx keeps the last of each type (removeAttestDupes replaces in place).
  const last = new Map<string, Attest>();
  for (const attest of all) last.set(attest.type, attest);
  const provenance = last.get('provenance');
  const sbom = last.get('sbom');
  return {
    ...(provenance === undefined || provenance.disabled ? {} : { provenance: provenanceRequest(provenance) }),
    ...(sbom === undefined || sbom.disabled ? {} : { sbom: sbomRequest(sbom) }),
  };
}

/** Whether the request attaches anything. */
export function attestsAnything(request: AttestationRequest | undefined): boolean {
  return request?.provenance !== undefined || request?.sbom !== undefined;
}
