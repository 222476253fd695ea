import { createRequire } from 'node:module';
import type { PackageURL, PurlQualifiers } from 'packageurl-js';

/**
 * packageurl-js, loaded when the first purl is made rather than with the module graph: loading
 * it builds its tables (10-15 ms of a cold start-up), which every `stratum build` paid through
 * the public API's barrel, while only SBOMs and provenance make purls.
 */
const require = createRequire(import.meta.url);
let loaded: typeof PackageURL | undefined;

/** The purl string of a package, as packageurl-js writes it. */
export function purl(
  type: string,
  namespace: string | undefined,
  name: string,
  version: string | undefined,
  qualifiers: PurlQualifiers | undefined,
): string {
  loaded ??= (require('packageurl-js') as { PackageURL: typeof PackageURL }).PackageURL;
  return new loaded(type, namespace, name, version, qualifiers, undefined).toString();
}
