import { StratumError } from '../errors.js';
import { RegistryClient, type RegistryClientOptions } from './client.js';
import { eraseCredential, storeCredential, type AuthFileOptions } from './credentials.js';
import { DOCKER_HUB, parseRegistryReference } from './reference.js';

/**
 * `stratum login` and `logout`, as `docker login` does them: the credential is checked against the
 * registry first (a Basic challenge with `GET /v2/`, a Bearer challenge with a token request), and
 * only then saved (credential helper, else `auths` in config.json, mode 0600).
 */

/** `https://host:5000/v2/`, `host:5000` and `docker.io` all name a registry; `index.docker.io` is Docker Hub. */
export function normaliseRegistryHost(text: string): string {
  let host = text.trim().replace(/^https?:\/\//, '');
  const slash = host.indexOf('/');
  if (slash !== -1) host = host.slice(0, slash);
  if (host === '') return DOCKER_HUB;
  host = host.toLowerCase();
  if (host === 'index.docker.io' || host === 'registry-1.docker.io') return DOCKER_HUB;
  // The reference grammar's host rule, applied to a bare host.
  parseRegistryReference(`${host}/x`);
  return host;
}

export interface LoginOptions extends RegistryClientOptions {
  readonly signal?: AbortSignal;
}

export async function login(
  registryText: string,
  credential: { readonly username: string; readonly password: string },
  options: LoginOptions = {},
): Promise<{ readonly registry: string; readonly path: string; readonly helper?: string }> {
  const registry = normaliseRegistryHost(registryText);
  if (credential.username === '')
    throw new StratumError('USAGE', `login to ${registry}: a username is required`);
  if (credential.password === '')
    throw new StratumError('USAGE', `login to ${registry}: a password is required`);
  const client = new RegistryClient({
    ...options,
    credential: () => Promise.resolve({ kind: 'basic', ...credential }),
  });
  try {
    // A pull-scoped request on the catalog-free endpoint: `GET /v2/` with the credential.
    await client.verifyLogin(registry, `login to ${registry}`, options.signal);
  } finally {
    await client.close();
  }
  const saved = await storeCredential(registry, credential, options);
  return { registry, ...saved };
}

export async function logout(
  registryText: string,
  options: AuthFileOptions = {},
): Promise<{ readonly registry: string; readonly removed: boolean }> {
  const registry = normaliseRegistryHost(registryText);
  const removed = await eraseCredential(registry, options);
  return { registry, removed };
}
