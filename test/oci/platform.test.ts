import { describe, expect, it } from 'vitest';
import {
  hostPlatform,
  parsePlatform,
  parsePlatformList,
  platformMatches,
  selectPlatform,
} from '../../src/oci/platform.js';
import { StratumError } from '../../src/errors.js';
import type { Descriptor } from '../../src/oci/types.js';

const entry = (architecture: string, variant?: string, os = 'linux'): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${(architecture + (variant ?? '')).padEnd(64, '0').replace(/[^a-f0-9]/g, '0')}`,
  size: 1,
  platform: variant === undefined ? { os, architecture } : { os, architecture, variant },
});

describe('platforms', () => {
  it("maps Node's process.arch to OCI names (x64 → amd64, arm64 → arm64, normalised)", () => {
    const host = hostPlatform();
    expect(host.os).toBe('linux');
    const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' };
    expect(host.architecture).toBe(expected[process.arch] ?? process.arch);
    if (process.arch === 'arm64') expect(host.variant).toBeUndefined();
  });

  it('parses and normalises as containerd does (arm64/v8 = arm64, arm = arm/v7, lone os or arch)', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/aarch64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/arm64/v9')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v9' });
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/amd64/v1')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/amd64/v3')).toEqual({ os: 'linux', architecture: 'amd64', variant: 'v3' });
    expect(parsePlatform('linux/armhf')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(parsePlatform('linux/arm')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(parsePlatform('linux/arm/6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(parsePlatform('Linux/ARM64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux')).toEqual(hostPlatform());
    for (const bad of [
      'linux/',
      '/amd64',
      'linux/arm/v7/x',
      'Linux Amd64',
      'linux/arm65',
      'lunix/amd64',
      'foo',
      '',
    ]) {
      expect(() => parsePlatform(bad)).toThrow(StratumError);
    }
    expect(() => parsePlatform('linux/arm65')).toThrow(
      'invalid platform "linux/arm65": unknown architecture "arm65"',
    );
  });

  it('parses a comma-separated list, dropping duplicates after normalisation', () => {
    expect(parsePlatformList('linux/amd64,linux/arm64/v8,linux/arm64,linux/arm/v7')).toEqual([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ]);
    expect(() => parsePlatformList('linux/amd64,')).toThrow(StratumError);
  });

  it('treats default variants as equal to none (arm64 = arm64/v8, arm = arm/v7)', () => {
    expect(
      platformMatches(
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
        { os: 'linux', architecture: 'arm64' },
      ),
    ).toBe(true);
    expect(
      platformMatches(
        { os: 'linux', architecture: 'arm', variant: 'v7' },
        { os: 'linux', architecture: 'arm' },
      ),
    ).toBe(true);
    expect(
      platformMatches(
        { os: 'linux', architecture: 'arm', variant: 'v6' },
        { os: 'linux', architecture: 'arm' },
      ),
    ).toBe(false);
    expect(
      platformMatches({ os: 'linux', architecture: 'amd64' }, { os: 'windows', architecture: 'amd64' }),
    ).toBe(false);
  });

  it('selects the exact variant from an index, and nothing when the platform is absent', () => {
    const index = [entry('amd64'), entry('arm', 'v6'), entry('arm', 'v7'), entry('arm64', 'v8')];
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe(index[2]);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm' })).toBe(index[2]);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm64' })).toBe(index[3]);
    expect(selectPlatform(index, { os: 'linux', architecture: 's390x' })).toBeUndefined();
    const { platform: _none, ...withoutPlatform } = entry('amd64');
    expect(selectPlatform([withoutPlatform], { os: 'linux', architecture: 'amd64' })).toBeUndefined();
  });
});
