import { describe, expect, it } from 'vitest';
import { parseAttestationFlags } from '../../src/attest/options.js';

describe('attestation flags, as buildx reads them', () => {
  it('nothing is attached unless asked for', () => {
    expect(parseAttestationFlags({})).toEqual({});
    expect(parseAttestationFlags({ attest: [] })).toEqual({});
  });

  it("--provenance=true is BuildKit's default mode (max) at SLSA v0.2; false attaches none", () => {
    expect(parseAttestationFlags({ provenance: 'true' })).toEqual({
      provenance: { mode: 'max', version: 'v0.2' },
    });
    expect(parseAttestationFlags({ provenance: '1' })).toEqual({
      provenance: { mode: 'max', version: 'v0.2' },
    });
    expect(parseAttestationFlags({ provenance: 'false' })).toEqual({});
  });

  it('--provenance=mode=min, mode=max,version=v1, builder-id=, reproducible=', () => {
    expect(parseAttestationFlags({ provenance: 'mode=min' })).toEqual({
      provenance: { mode: 'min', version: 'v0.2' },
    });
    expect(parseAttestationFlags({ provenance: 'mode=max,version=v1' })).toEqual({
      provenance: { mode: 'max', version: 'v1' },
    });
    expect(parseAttestationFlags({ provenance: 'min' })).toEqual({
      provenance: { mode: 'min', version: 'v0.2' },
    });
    expect(
      parseAttestationFlags({ provenance: 'mode=max,builder-id=https://ci.example/run/1,reproducible=true' }),
    ).toEqual({
      provenance: { mode: 'max', version: 'v0.2', builderId: 'https://ci.example/run/1', reproducible: true },
    });
  });

  it('--sbom=true|false and --attest type=sbom', () => {
    expect(parseAttestationFlags({ sbom: 'true' })).toEqual({ sbom: {} });
    expect(parseAttestationFlags({ sbom: 'false' })).toEqual({});
    expect(parseAttestationFlags({ attest: ['type=sbom'] })).toEqual({ sbom: {} });
  });

  it('--attest type=provenance,... repeats; the last of a type wins and disabled=true turns it off', () => {
    expect(parseAttestationFlags({ attest: ['type=provenance,mode=min', 'type=sbom'] })).toEqual({
      provenance: { mode: 'min', version: 'v0.2' },
      sbom: {},
    });
    expect(
      parseAttestationFlags({ attest: ['type=provenance,mode=min', 'type=provenance,disabled=true'] }),
    ).toEqual({});
    // The shorthand comes after --attest, as buildx appends it.
    expect(parseAttestationFlags({ attest: ['type=provenance,mode=min'], provenance: 'false' })).toEqual({});
    expect(parseAttestationFlags({ attest: ['type=sbom,disabled=true'], sbom: 'true' })).toEqual({
      sbom: {},
    });
  });

  it('malformed values are usage errors naming the flag', () => {
    const usage = (flags: Parameters<typeof parseAttestationFlags>[0], text: RegExp): void => {
      expect(() => parseAttestationFlags(flags)).toThrow(text);
      try {
        parseAttestationFlags(flags);
      } catch (error) {
        expect((error as { code: string }).code).toMatch(/USAGE|UNSUPPORTED/);
      }
    };
    usage({ provenance: 'mode=most' }, /--provenance mode=most: mode=most is not min or max/);
    usage({ provenance: 'version=v3' }, /version=v3 is not v0.2 or v1/);
    usage({ attest: ['mode=max'] }, /--attest mode=max: attestation type not specified/);
    usage({ attest: ['type=vex'] }, /unknown attestation type "vex"/);
    usage({ attest: ['type=provenance,colour=red'] }, /unknown key "colour"/);
    usage({ sbom: 'maybe' }, /--sbom maybe: "maybe" is not KEY=VALUE/);
    usage({ attest: ['type=sbom,generator=docker/buildkit-syft-scanner'] }, /stratum scans the image itself/);
  });
});
