import { StratumError } from '../errors.js';
import type { Descriptor, Platform } from '../oci/types.js';

/**
 * Platform matching for image indexes. Kept here (a small local helper) until src/oci exports
 * one; the rules follow containerd's `platforms` package: normalise the architecture (x86_64 →
 * amd64, aarch64 → arm64), treat arm64 without a variant as v8, and compare os/arch/variant.
 */

function normaliseArch(
  arch: string,
  variant: string | undefined,
): { architecture: string; variant?: string } {
  switch (arch) {
    case 'x86_64':
    case 'x86-64':
    case 'x64':
      return { architecture: 'amd64' };
    case 'aarch64':
    case 'arm64':
      return { architecture: 'arm64', variant: variant === undefined || variant === '8' ? 'v8' : variant };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm':
      return {
        architecture: 'arm',
        variant: variant === undefined ? 'v7' : variant.startsWith('v') ? variant : `v${variant}`,
      };
    case 'i386':
    case 'ia32':
      return { architecture: '386' };
    case 'amd64':
      return variant === undefined || variant === 'v1'
        ? { architecture: 'amd64' }
        : { architecture: 'amd64', variant };
    default:
      return variant === undefined ? { architecture: arch } : { architecture: arch, variant };
  }
}

export function normalisePlatform(platform: Platform): Platform {
  const arch = normaliseArch(platform.architecture, platform.variant);
  const os = platform.os === 'macos' ? 'darwin' : platform.os;
  return { os, ...arch };
}

/** The host's platform in OCI terms. Images are Linux images even on a macOS host, as in Docker. */
export function hostPlatform(): Platform {
  const archMap: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    mips64el: 'mips64le',
    loong64: 'loong64',
  };
  const architecture = archMap[process.arch] ?? process.arch;
  const os = process.platform === 'win32' ? 'windows' : 'linux';
  let variant: string | undefined;
  if (architecture === 'arm') {
    const armVersion = (process.config.variables as Record<string, unknown>)['arm_version'];
    variant = `v${typeof armVersion === 'string' || typeof armVersion === 'number' ? armVersion : '7'}`;
  }
  return normalisePlatform(variant === undefined ? { os, architecture } : { os, architecture, variant });
}

/** `linux/arm64/v8` → Platform; a usage error names what was wrong. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => part === '')) {
    throw new StratumError('USAGE', `invalid platform "${text}": expected os/arch or os/arch/variant`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalisePlatform(
    variant === undefined
      ? { os: os.toLowerCase(), architecture: architecture.toLowerCase() }
      : { os: os.toLowerCase(), architecture: architecture.toLowerCase(), variant: variant.toLowerCase() },
  );
}

export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant !== undefined ? `/${platform.variant}` : ''}`;
}

export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  const a = normalisePlatform(wanted);
  const b = normalisePlatform(candidate);
  if (a.os !== b.os || a.architecture !== b.architecture) return false;
  // A request without a variant takes any variant; with one, it must be equal.
  return a.variant === undefined || a.variant === b.variant;
}

/**
 * Chooses the manifest for `wanted` from an index's entries. Entries without a platform (attestations,
 * artifacts) never match. Returns undefined when nothing matches.
 */
export function choosePlatformManifest(
  manifests: readonly Descriptor[],
  wanted: Platform,
): Descriptor | undefined {
  const candidates = manifests.filter(
    (entry) => entry.platform !== undefined && platformMatches(wanted, entry.platform),
  );
  // Prefer an exact variant match when the request had no variant (e.g. arm64 v8 over others).
  const normalWanted = normalisePlatform(wanted);
  return (
    candidates.find((entry) => normalisePlatform(entry.platform!).variant === normalWanted.variant) ??
    candidates[0]
  );
}
