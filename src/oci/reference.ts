import { StratumError } from '../errors.js';
import type { ImageReference } from './image.js';

/**
 * Image references in skopeo's transport syntax (containers/image `transports/alltransports`).
 *
 * For `oci:`, `oci-archive:` and `docker-archive:` the text after the transport is split at its
 * FIRST colon, exactly as containers/image does on Unix: `oci:/tmp/x:latest` is path `/tmp/x`,
 * tag `latest`, so a path cannot itself contain a colon. An empty tag (`oci:/tmp/x:`) is refused.
 * `docker-archive:` takes a full name as its tag (`file.tar:name:1.0` → `name:1.0`), or `@N` to
 * pick the N-th image of an archive when reading.
 *
 * Anything without a known transport prefix is a name in stratum's local store (`myapp`,
 * `myapp:1.0`, `registry.example:5000/team/app:tag`): `localhost:5000/x` is therefore a store name,
 * not a transport, because `localhost` is not a transport.
 */

const TRANSPORTS = ['oci', 'oci-archive', 'docker-archive', 'docker', 'docker-daemon'] as const;

// A reference tag (docker/distribution reference grammar): [\w][\w.-]{0,127}
const TAG = /^[\w][\w.-]{0,127}$/;
// A name: lower-case path components separated by / with an optional host[:port] first,
// then an optional :tag and an optional @digest. Kept close to distribution/reference.
const NAME =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

export function isValidImageName(text: string): boolean {
  return text.length <= 255 + 128 + 72 && NAME.test(text) && !looksLikeUpperCasePath(text);
}

/**
 * A first component is a registry host only when it has a `.` or a `:port` or is `localhost`
 * (Docker's rule); otherwise it is part of the repository path, which must be lowercase:
 * `UPPER/x:1` is refused as Docker refuses it, where the host pattern alone would take it.
 */
function looksLikeUpperCasePath(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const first = text.slice(0, slash);
  return !/[.:]/.test(first) && first !== 'localhost' && first !== first.toLowerCase();
}

function splitPathAndTag(rest: string, transport: string, original: string): { path: string; tag?: string } {
  const colon = rest.indexOf(':');
  const path = colon === -1 ? rest : rest.slice(0, colon);
  const tag = colon === -1 ? undefined : rest.slice(colon + 1);
  if (path === '')
    throw new StratumError('USAGE', `invalid image reference "${original}": ${transport}: needs a path`);
  if (tag === undefined) return { path };
  if (tag === '')
    throw new StratumError('USAGE', `invalid image reference "${original}": empty tag after the path`);
  return { path, tag };
}

export function parseImageReference(text: string): ImageReference {
  if (text.trim() === '') throw new StratumError('USAGE', 'invalid image reference "": empty');
  const colon = text.indexOf(':');
  const prefix = colon === -1 ? '' : text.slice(0, colon);
  const transport = TRANSPORTS.find((name) => name === prefix);
  const rest = text.slice(colon + 1);
  switch (transport) {
    case 'oci':
    case 'oci-archive': {
      const { path, tag } = splitPathAndTag(rest, transport, text);
      if (tag !== undefined && !TAG.test(tag) && !isValidImageName(tag)) {
        throw new StratumError(
          'USAGE',
          `invalid image reference "${text}": "${tag}" is not a valid tag or name`,
        );
      }
      return tag === undefined ? { transport, path } : { transport, path, tag };
    }
    case 'docker-archive': {
      const { path, tag } = splitPathAndTag(rest, transport, text);
      if (tag !== undefined && !/^@\d+$/.test(tag) && !isValidImageName(tag)) {
        throw new StratumError(
          'USAGE',
          `invalid image reference "${text}": "${tag}" is not a valid image name`,
        );
      }
      return tag === undefined ? { transport, path } : { transport, path, tag };
    }
    case 'docker': {
      if (!rest.startsWith('//') || rest.length === 2) {
        throw new StratumError('USAGE', `invalid image reference "${text}": expected docker://NAME[:TAG]`);
      }
      const reference = rest.slice(2);
      if (!isValidImageName(reference)) {
        throw new StratumError(
          'USAGE',
          `invalid image reference "${text}": "${reference}" is not a valid image name${isValidImageName(reference.toLowerCase()) ? ' (repository names must be lowercase)' : ''}`,
        );
      }
      return { transport, reference };
    }
    case 'docker-daemon': {
      if (rest === '')
        throw new StratumError('USAGE', `invalid image reference "${text}": docker-daemon: needs a name`);
      const isId = /^(sha256:)?[a-f0-9]{12,64}$/.test(rest);
      if (!isId && !isValidImageName(rest)) {
        throw new StratumError(
          'USAGE',
          `invalid image reference "${text}": "${rest}" is not a valid image name`,
        );
      }
      return { transport, name: rest };
    }
    case undefined: {
      if (!isValidImageName(text)) {
        throw new StratumError(
          'USAGE',
          isValidImageName(text.toLowerCase())
            ? `invalid image reference "${text}": repository names must be lowercase`
            : `invalid image reference "${text}": not a transport (oci:, oci-archive:, docker-archive:, docker://, docker-daemon:) nor a valid image name`,
        );
      }
      return { transport: 'store', name: text };
    }
  }
}

export function formatImageReference(reference: ImageReference): string {
  switch (reference.transport) {
    case 'oci':
    case 'oci-archive':
    case 'docker-archive':
      return reference.tag === undefined
        ? `${reference.transport}:${reference.path}`
        : `${reference.transport}:${reference.path}:${reference.tag}`;
    case 'docker':
      return `docker://${reference.reference}`;
    case 'docker-daemon':
      return `docker-daemon:${reference.name}`;
    case 'store':
      return reference.name;
  }
}

/**
 * `name` → `name:latest` unless it has a tag or digest; the tag is found after the last `/`,
 * so a registry port (`host:5000/app`) is not mistaken for one.
 */
export function normalizeImageName(name: string): string {
  if (name.includes('@')) return name;
  const lastSlash = name.lastIndexOf('/');
  return name.slice(lastSlash + 1).includes(':') ? name : `${name}:latest`;
}
