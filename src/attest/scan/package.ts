/** One software package an SBOM lists, as the scanners find it. Plain data. */
export interface FoundPackage {
  /** The purl type: deb, apk, npm, pypi, golang. */
  readonly type: 'deb' | 'apk' | 'npm' | 'pypi' | 'golang';
  readonly name: string;
  readonly version: string;
  readonly purl: string;
  /** The licence as the package declares it (any form; spdx.ts makes it an SPDX expression). */
  readonly license?: string;
  /** Where the scanner read it: `var/lib/dpkg/status`, `usr/lib/node_modules/x/package.json`. */
  readonly location: string;
  /** How it was found, for SPDX `sourceInfo` ("acquired package info from ..."). */
  readonly sourceInfo: string;
  /** The layer (index in the manifest) that added it; absent for a directory scan. */
  readonly layer?: number;
  readonly supplier?: string;
  readonly homepage?: string;
  readonly description?: string;
}

/** RFC 822-like stanzas (dpkg status, apk's installed db uses K:V lines instead). */
export function parseStanzas(text: string): Map<string, string>[] {
  const stanzas: Map<string, string>[] = [];
  let current = new Map<string, string>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (current.size > 0) stanzas.push(current);
      current = new Map();
      last = undefined;
      continue;
    }
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) {
      current.set(last, `${current.get(last)}\n${line.slice(1)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon);
    current.set(last, line.slice(colon + 1).trim());
  }
  if (current.size > 0) stanzas.push(current);
  return stanzas;
}
