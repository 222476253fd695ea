import { StratumError } from '../errors.js';

/**
 * Docker's image reference grammar (distribution/reference, `reference.go` and `normalize.go`),
 * written out here so that a bad reference is rejected with the rule it broke.
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [domain "/"] path-component ["/" path-component]*
 *   domain     := host [":" port]        host := domain-name | IPv4 | "[" IPv6 "]"
 *   path-component := [a-z0-9]+ (separator [a-z0-9]+)*     separator := [._] | "__" | "-"+
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex{32,}
 */
export interface RegistryReference {
  /** The registry host as written, normalised: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  readonly registry: string;
  /** The repository path inside the registry: `library/busybox`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const DOCKER_HUB = 'docker.io';
/** Docker Hub's API lives on another host than its name (docker's `IndexServer`/`DefaultRegistryHost`). */
const DOCKER_HUB_API = 'registry-1.docker.io';
const NAME_TOTAL_LENGTH_MAX = 255;

const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainPattern = new RegExp(
  `^(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:.]+(?:%[a-zA-Z0-9]+)?\\])(?::[0-9]+)?$`,
);
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const anchoredHex = /^[a-f0-9]{64}$/;

function invalid(text: string, reason: string): StratumError {
  return new StratumError('USAGE', `invalid reference "${text}": ${reason}`);
}

/**
 * Parses and normalises a reference the way `docker pull` does:
 * `busybox` → `docker.io/library/busybox:latest`. A reference with a digest and no tag keeps no tag.
 */
export function parseRegistryReference(text: string): RegistryReference {
  const input = text.startsWith('docker://') ? text.slice('docker://'.length) : text;
  if (input === '') throw invalid(text, 'empty reference');
  if (anchoredHex.test(input)) {
    throw invalid(text, 'a 64-character hexadecimal string is an image ID, not a repository name');
  }

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw invalid(text, `malformed digest "${digest}"`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw invalid(text, `a sha256 digest needs 64 lowercase hexadecimal characters`);
    }
  }

  // A tag follows the last colon that comes after the last slash (a colon before it is a port).
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  if (colon !== -1) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) {
      throw invalid(
        text,
        `invalid tag "${tag}" (letters, digits, _ . -, at most 128, not starting with . or -)`,
      );
    }
  }
  if (rest === '') throw invalid(text, 'missing repository name');

  const { registry, path } = splitDomain(rest, text);
  if (path === '') throw invalid(text, 'missing repository name');
  if (path !== path.toLowerCase()) throw invalid(text, 'repository name must be lowercase');
  for (const component of path.split('/')) {
    if (!pathComponent.test(component)) {
      throw invalid(
        text,
        component === ''
          ? 'empty path component'
          : `invalid path component "${component}" (lowercase letters and digits, separated by . _ __ or -)`,
      );
    }
  }
  const repository = registry === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path;
  const nameLength = registry.length + 1 + repository.length;
  if (nameLength > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(text, `repository name is longer than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return {
    registry,
    repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** normalize.go `splitDockerDomain`: the first component is a registry only if it looks like a host. */
function splitDomain(name: string, text: string): { registry: string; path: string } {
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  const isDomain =
    slash !== -1 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase());
  if (!isDomain) return { registry: DOCKER_HUB, path: name };
  if (!domainPattern.test(first)) throw invalid(text, `invalid registry host "${first}"`);
  const registry = first === 'index.docker.io' ? DOCKER_HUB : first;
  return { registry, path: name.slice(slash + 1) };
}

/** `host/repo:tag@digest`, fully qualified. */
export function formatReference(ref: RegistryReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The short form Docker prints: `busybox:latest` rather than `docker.io/library/busybox:latest`. */
export function familiarReference(ref: RegistryReference): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository.startsWith('library/') ? ref.repository.slice('library/'.length) : ref.repository;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The same repository with another tag or digest. */
export function withTag(ref: RegistryReference, tag: string): RegistryReference {
  if (!tagPattern.test(tag))
    throw invalid(`${ref.registry}/${ref.repository}:${tag}`, `invalid tag "${tag}"`);
  return { registry: ref.registry, repository: ref.repository, tag };
}

export function withDigest(ref: RegistryReference, digest: string): RegistryReference {
  return { registry: ref.registry, repository: ref.repository, digest };
}

/** The tag or digest to put in `/v2/<name>/manifests/<reference>`: the digest wins, as in Docker. */
export function manifestReference(ref: RegistryReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** The host that serves the API: Docker Hub's name and its API host differ. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** The hostname without port and brackets, for loopback and insecure checks. */
export function hostname(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const colon = registry.lastIndexOf(':');
  return colon === -1 ? registry : registry.slice(0, colon);
}

/** Docker treats these as insecure without being told: `localhost`, 127.0.0.0/8 and ::1. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = hostname(registry).toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
