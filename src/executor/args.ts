import type { Platform } from '../oci/types.js';

/**
 * Build arguments as Docker scopes them. A stage sees an ARG only after declaring it; the ARGs
 * before the first FROM ("meta ARGs") are visible to FROM lines and, when re-declared without a
 * value inside a stage, give it their value. ENV of the same name shadows an ARG.
 */

/** Proxy ARGs are predefined: usable without declaration, and kept out of history. */
export const PROXY_ARGS: ReadonlySet<string> = new Set([
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
]);

function platformString(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant]
    .filter((part) => part !== undefined && part !== '')
    .join('/');
}

/**
 * The automatic platform ARGs BuildKit defines in the global scope (and that a stage gets by
 * declaring `ARG TARGETARCH` etc. without a value). stratum builds for the host only, so the
 * build and target platforms are the same.
 */
export function platformArgs(target: Platform, build: Platform): ReadonlyMap<string, string> {
  return new Map([
    ['TARGETPLATFORM', platformString(target)],
    ['TARGETOS', target.os],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
    ['BUILDPLATFORM', platformString(build)],
    ['BUILDOS', build.os],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', build.variant ?? ''],
  ]);
}

/** Tracks which --build-arg values were consumed, to warn about the others as Docker does. */
export class BuildArgUsage {
  private readonly used = new Set<string>();

  constructor(readonly values: ReadonlyMap<string, string>) {}

  get(name: string): string | undefined {
    const value = this.values.get(name);
    if (value !== undefined) this.used.add(name);
    return value;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  unused(): string[] {
    return [...this.values.keys()].filter((name) => !this.used.has(name) && !PROXY_ARGS.has(name)).sort();
  }
}
