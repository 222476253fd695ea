import { StratumError } from '../errors.js';
import type { Descriptor, Platform } from './types.js';

/**
 * Platforms as the OCI image index names them, and the rules for choosing one.
 * Normalisation follows containerd's `platforms` package: architecture aliases (x86_64, aarch64)
 * fold to GOARCH names, and the default variants (amd64 v1, arm64 v8, arm v7) compare equal to
 * an absent variant.
 */

const ARCH_ALIASES: Readonly<Record<string, { architecture: string; variant?: string }>> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
};

/** The variant an architecture has when none is written. */
const DEFAULT_VARIANT: Readonly<Record<string, string>> = { amd64: 'v1', arm64: 'v8', arm: 'v7' };

/** Node's process.arch → OCI architecture (GOARCH names). */
const NODE_ARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le', // Node on Linux/ppc64 is little-endian
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/**
 * The platform images are chosen for by default. The OS is linux even on macOS (images are
 * Linux images; Docker Desktop does the same); only Windows hosts ask for windows.
 */
export function hostPlatform(): Platform {
  const os = process.platform === 'win32' ? 'windows' : 'linux';
  const architecture = NODE_ARCH[process.arch] ?? process.arch;
  if (architecture === 'arm64') return { architecture, os, variant: 'v8' };
  if (architecture === 'arm') {
    const variables = process.config.variables as unknown as Record<string, unknown>;
    const armVersion = variables['arm_version'];
    return { architecture, os, variant: `v${typeof armVersion === 'string' ? armVersion : '7'}` };
  }
  return { architecture, os };
}

/** Parses `os/arch[/variant]` (`linux/arm64/v8`, `linux/amd64`); aliases are normalised. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  const [os, arch, variant] = parts;
  if (parts.length < 2 || parts.length > 3 || !os || !arch || (parts.length === 3 && !variant)) {
    throw new StratumError(
      'USAGE',
      `invalid platform "${text}": expected os/arch[/variant], e.g. linux/arm64/v8`,
    );
  }
  if (!/^[a-z0-9_.-]+$/.test(os + arch + (variant ?? ''))) {
    throw new StratumError(
      'USAGE',
      `invalid platform "${text}": only lower-case letters, digits, _ . - allowed`,
    );
  }
  return normalizePlatform(
    variant === undefined ? { os, architecture: arch } : { os, architecture: arch, variant },
  );
}

export function formatPlatform(platform: Platform): string {
  const base = `${platform.os}/${platform.architecture}`;
  return platform.variant ? `${base}/${platform.variant}` : base;
}

export function normalizePlatform(platform: Platform): Platform {
  const alias = ARCH_ALIASES[platform.architecture.toLowerCase()];
  const architecture = alias?.architecture ?? platform.architecture.toLowerCase();
  const variant = platform.variant ?? alias?.variant;
  const { variant: _dropped, ...rest } = platform;
  const normalized: Platform = { ...rest, os: platform.os.toLowerCase(), architecture };
  return variant === undefined || variant === '' ? normalized : { ...normalized, variant };
}

function effectiveVariant(platform: Platform): string | undefined {
  return platform.variant ?? DEFAULT_VARIANT[platform.architecture];
}

/**
 * Whether `candidate` serves `wanted`: same OS and architecture, and the same variant once
 * defaults are filled in. A `wanted` without a variant accepts any variant.
 */
export function platformMatches(wanted: Platform, candidate: Platform): boolean {
  const w = normalizePlatform(wanted);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return false;
  if (wanted.variant === undefined) return true;
  return effectiveVariant(w) === effectiveVariant(c);
}

/**
 * Picks the entry of an index for `wanted`. Prefers an exact variant match over a variant-less
 * request matching any variant; entries without a platform are not chosen (they are attestations
 * or artifacts). Returns undefined when nothing matches.
 */
export function selectPlatform(manifests: readonly Descriptor[], wanted: Platform): Descriptor | undefined {
  const w = normalizePlatform(wanted);
  const candidates = manifests.flatMap((entry) =>
    entry.platform === undefined ? [] : [{ entry, platform: normalizePlatform(entry.platform) }],
  );
  const sameArch = candidates.filter(
    (c) => c.platform.os === w.os && c.platform.architecture === w.architecture,
  );
  const exact = sameArch.find((c) => effectiveVariant(c.platform) === effectiveVariant(w));
  if (exact) return exact.entry;
  return wanted.variant === undefined ? sameArch[0]?.entry : undefined;
}
