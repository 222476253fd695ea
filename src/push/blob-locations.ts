/**
 * Which repositories of a registry are known (this process) to hold a blob: every blob pulled,
 * found, mounted or uploaded is recorded, so that a later push to another repository of the same
 * registry can mount it instead of uploading it again (kaniko uploaded every base layer twice).
 */
const locations = new Map<string, Map<string, Set<string>>>();

export function rememberBlob(registry: string, repository: string, digest: string): void {
  let byDigest = locations.get(registry);
  if (byDigest === undefined) {
    byDigest = new Map();
    locations.set(registry, byDigest);
  }
  let repositories = byDigest.get(digest);
  if (repositories === undefined) {
    repositories = new Set();
    byDigest.set(digest, repositories);
  }
  repositories.add(repository);
}

/** Repositories of `registry` known to hold `digest`, most recently recorded last. */
export function knownBlobLocations(registry: string, digest: string): readonly string[] {
  return [...(locations.get(registry)?.get(digest) ?? [])];
}

/** For tests: forget everything. */
export function forgetBlobLocations(): void {
  locations.clear();
}
