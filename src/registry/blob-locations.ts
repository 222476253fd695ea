/**
 * Which repositories of a registry are known to hold a blob: every blob pulled, found, mounted or
 * uploaded is recorded, so that a later push to another repository of the same registry can
 * mount it instead of uploading it again (kaniko uploaded every base layer twice). One instance
 * belongs to a RegistryContext, shared by the clients of one build (FROM, --push, the cache).
 */
export class BlobLocations {
  private readonly byRegistry = new Map<string, Map<string, Set<string>>>();

  remember(registry: string, repository: string, digest: string): void {
    let byDigest = this.byRegistry.get(registry);
    if (byDigest === undefined) {
      byDigest = new Map();
      this.byRegistry.set(registry, byDigest);
    }
    let repositories = byDigest.get(digest);
    if (repositories === undefined) {
      repositories = new Set();
      byDigest.set(digest, repositories);
    }
    repositories.add(repository);
  }

  /** Repositories of `registry` known to hold `digest`, most recently recorded last. */
  known(registry: string, digest: string): readonly string[] {
    return [...(this.byRegistry.get(registry)?.get(digest) ?? [])];
  }
}
