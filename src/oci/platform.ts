import { StratumError } from '../errors.js';
import type { Descriptor, Platform } from './types.js';

/**
 * Platforms as the OCI image index names them, and the rules for choosing one.
 * Parsing and normalisation follow containerd's `platforms` package (which BuildKit uses for
 * `--platform`, TARGETPLATFORM and the index it writes): architecture aliases (x86_64, aarch64,
 * armhf) fold to GOARCH names, a default variant is dropped (`arm64/v8` → `arm64`, `amd64/v1` →
 * `amd64`) except for arm, whose variant is always written (`arm` → `arm/v7`), and a lone OS or
 * architecture is completed with the host's (`arm64` → `linux/arm64`, `linux` → `linux/amd64`).
 */

/** GOOS values containerd accepts (plus its `macos` alias). */
const KNOWN_OS: ReadonlySet<string> = new Set([
  'aix',
  'android',
  'darwin',
  'dragonfly',
  'freebsd',
  'hurd',
  'illumos',
  'ios',
  'js',
  'linux',
  'nacl',
  'netbsd',
  'openbsd',
  'plan9',
  'solaris',
  'wasip1',
  'windows',
  'zos',
]);

/** GOARCH values containerd accepts. */
const KNOWN_ARCH: ReadonlySet<string> = new Set([
  '386',
  'amd64',
  'amd64p32',
  'arm',
  'armbe',
  'arm64',
  'arm64be',
  'ppc64',
  'ppc64le',
  'loong64',
  'mips',
  'mipsle',
  'mips64',
  'mips64le',
  'mips64p32',
  'mips64p32le',
  'ppc',
  'riscv',
  'riscv64',
  's390',
  's390x',
  'sparc',
  'sparc64',
  'wasm',
]);

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
 * The platform images are chosen for by default, normalised (arm64 hosts are `linux/arm64`, as
 * BuildKit's BUILDPLATFORM says). The OS is linux even on macOS (images are Linux images; Docker
 * Desktop does the same); only Windows hosts ask for windows.
 */
export function hostPlatform(): Platform {
  const os = process.platform === 'win32' ? 'windows' : 'linux';
  const architecture = NODE_ARCH[process.arch] ?? process.arch;
  if (architecture === 'arm') {
    const variables = process.config.variables as unknown as Record<string, unknown>;
    const armVersion = variables['arm_version'];
    return { architecture, os, variant: `v${typeof armVersion === 'string' ? armVersion : '7'}` };
  }
  return { architecture, os };
}

function invalid(text: string, why: string): StratumError {
  return new StratumError('USAGE', `invalid platform "${text}": ${why}`);
}

/**
 * Parses a platform as containerd does: `os/arch[/variant]`, or a lone OS or architecture
 * (`linux`, `arm64`). The result is normalised. An unknown OS or architecture is a USAGE error
 * naming it (containerd lets `os/arch` through unchecked, then nothing matches it later).
 */
export function parsePlatform(text: string): Platform {
  const trimmed = text.trim();
  const parts = trimmed.toLowerCase().split('/');
  if (
    parts.length > 3 ||
    parts.some((part) => part === '') ||
    !/^[a-z0-9_./-]+$/.test(trimmed.toLowerCase())
  ) {
    throw invalid(text, 'expected os/arch[/variant], e.g. linux/arm64 or linux/arm/v7');
  }
  let platform: Platform;
  if (parts.length === 1) {
    const only = parts[0]!;
    if (KNOWN_OS.has(only) || only === 'macos') platform = { ...hostPlatform(), os: only };
    else if (KNOWN_ARCH.has(only) || ARCH_ALIASES[only] !== undefined)
      platform = { os: hostPlatform().os, architecture: only };
    else throw invalid(text, `unknown operating system or architecture "${only}"`);
  } else {
    const [os, architecture, variant] = parts as [string, string, string | undefined];
    platform = variant === undefined ? { os, architecture } : { os, architecture, variant };
  }
  const normalized = normalizePlatform(platform);
  if (!KNOWN_OS.has(normalized.os)) throw invalid(text, `unknown operating system "${normalized.os}"`);
  if (!KNOWN_ARCH.has(normalized.architecture))
    throw invalid(text, `unknown architecture "${normalized.architecture}"`);
  return normalized;
}

/**
 * `--platform a,b,...`: each platform parsed and normalised, duplicates (after normalisation:
 * `linux/arm64` and `linux/arm64/v8`) kept once, in the order given.
 */
export function parsePlatformList(text: string): readonly Platform[] {
  const out: Platform[] = [];
  for (const item of text.split(',')) {
    if (item.trim() === '') throw invalid(text, 'empty entry in the comma-separated list');
    const platform = parsePlatform(item);
    if (!out.some((seen) => formatPlatform(seen) === formatPlatform(platform))) out.push(platform);
  }
  return out;
}

export function formatPlatform(platform: Platform): string {
  const base = `${platform.os}/${platform.architecture}`;
  return platform.variant ? `${base}/${platform.variant}` : base;
}

/**
 * containerd's Normalize: lower-case OS (`macos` → `darwin`), GOARCH names for aliases, the
 * default variant of amd64 and arm64 dropped, arm's variant always set (`v7` by default, a bare
 * digit gets its `v`).
 */
export function normalizePlatform(platform: Platform): Platform {
  const lowerOs = platform.os.toLowerCase();
  const os = lowerOs === 'macos' ? 'darwin' : lowerOs;
  const alias = ARCH_ALIASES[platform.architecture.toLowerCase()];
  const architecture = alias?.architecture ?? platform.architecture.toLowerCase();
  let variant = (
    platform.variant === undefined || platform.variant === '' ? alias?.variant : platform.variant
  )?.toLowerCase();
  if (architecture === 'arm64' && (variant === '8' || variant === 'v8' || variant === 'v8.0'))
    variant = undefined;
  if (architecture === 'arm64' && (variant === '9' || variant === '9.0' || variant === 'v9.0'))
    variant = 'v9';
  if (architecture === 'amd64' && (variant === 'v1' || variant === '1')) variant = undefined;
  if (architecture === '386') variant = undefined;
  if (architecture === 'arm') {
    if (variant === undefined || variant === '7') variant = 'v7';
    else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
  }
  const { variant: _dropped, ...rest } = platform;
  const normalized: Platform = { ...rest, os, architecture };
  return variant === undefined ? normalized : { ...normalized, variant };
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
