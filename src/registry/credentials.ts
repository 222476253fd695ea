import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { StratumError, errnoCode, isStratumError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { makeDirectories } from '../util/directories.js';
import { DOCKER_HUB } from './reference.js';
import { redact } from './registry-error.js';

/**
 * Docker's credential store: `config.json` with `auths`, `credHelpers` and `credsStore`
 * (docker/cli `cli/config/configfile`). The file is found as Docker and podman find it:
 * `REGISTRY_AUTH_FILE` (a file), else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
 */
export type Credential =
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  | { readonly kind: 'identity-token'; readonly username: string; readonly token: string };

export interface AuthFileOptions {
  /** A config.json path; default from the environment as above. */
  readonly authFile?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Docker keeps Hub credentials under its v1 index URL. */
const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

export function authFilePath(options: AuthFileOptions = {}): string {
  if (options.authFile !== undefined) return options.authFile;
  const env = options.env ?? process.env;
  const registryAuthFile = env['REGISTRY_AUTH_FILE'];
  if (registryAuthFile !== undefined && registryAuthFile !== '') return registryAuthFile;
  const dockerConfig = env['DOCKER_CONFIG'];
  if (dockerConfig !== undefined && dockerConfig !== '') return join(dockerConfig, 'config.json');
  return join(env['HOME'] ?? homedir(), '.docker', 'config.json');
}

/** The key Docker writes for a registry. */
export function authKey(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEY : registry;
}

/** `https://host:5000/v2/` and `host:5000` name the same registry. */
function normaliseKey(key: string): string {
  let out = key.replace(/^https?:\/\//, '');
  const slash = out.indexOf('/');
  if (slash !== -1) out = out.slice(0, slash);
  out = out.toLowerCase();
  if (out === 'index.docker.io' || out === 'registry-1.docker.io') return DOCKER_HUB;
  return out;
}

type ConfigFile = Record<string, unknown>;

async function readConfigFile(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return {};
    throw new StratumError('IO', `${path}: cannot read: ${errnoCode(error) ?? String(error)}`);
  }
  if (text.trim() === '') return {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as ConfigFile;
  } catch {
    // Never echo the file: it holds secrets.
    throw new StratumError('AUTH', `${path}: not a valid Docker config file (JSON object expected)`);
  }
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function findEntry<T>(map: Record<string, T> | undefined, registry: string): [string, T] | undefined {
  if (map === undefined) return undefined;
  const wanted = normaliseKey(registry);
  for (const [key, value] of Object.entries(map)) {
    if (normaliseKey(key) === wanted) return [key, value];
  }
  return undefined;
}

function decodeAuthEntry(entry: Record<string, unknown>, path: string, key: string): Credential | undefined {
  const identityToken = typeof entry['identitytoken'] === 'string' ? entry['identitytoken'] : undefined;
  let username = typeof entry['username'] === 'string' ? entry['username'] : undefined;
  let password = typeof entry['password'] === 'string' ? entry['password'] : undefined;
  if (typeof entry['auth'] === 'string' && entry['auth'] !== '') {
    const decoded = Buffer.from(entry['auth'], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1)
      throw new StratumError('AUTH', `${path}: auths["${key}"].auth is not base64 of user:password`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (identityToken !== undefined && identityToken !== '') {
    return { kind: 'identity-token', username: username ?? '', token: identityToken };
  }
  if (username !== undefined && password !== undefined && (username !== '' || password !== '')) {
    return { kind: 'basic', username, password };
  }
  return undefined;
}

/** Finds the credential for a registry: credHelpers, then auths, then credsStore (Docker's order). */
export async function resolveCredential(
  registry: string,
  options: AuthFileOptions = {},
): Promise<Credential | undefined> {
  const path = authFilePath(options);
  const config = await readConfigFile(path);
  const helpers = record(config['credHelpers']);
  const helper = findEntry(helpers, registry);
  if (helper !== undefined && typeof helper[1] === 'string') {
    return helperGet(helper[1], authKey(registry), options);
  }
  const auths = record(config['auths']);
  const entry = findEntry(auths, registry);
  if (entry !== undefined) {
    const value = record(entry[1]);
    const credential = value !== undefined ? decodeAuthEntry(value, path, entry[0]) : undefined;
    if (credential !== undefined) return credential;
  }
  if (typeof config['credsStore'] === 'string' && config['credsStore'] !== '') {
    return helperGet(config['credsStore'], authKey(registry), options);
  }
  return undefined;
}

interface HelperResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
}

function runHelper(
  name: string,
  action: string,
  input: string,
  env: NodeJS.ProcessEnv,
): Promise<HelperResult> {
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (error) => {
      reject(
        errnoCode(error) === 'ENOENT'
          ? new StratumError('AUTH', `credential helper ${program} is not installed (not on PATH)`)
          : new StratumError(
              'AUTH',
              `credential helper ${program}: ${errnoCode(error) ?? 'failed to start'}`,
            ),
      );
    });
    child.on('close', (code) => {
      resolve({ stdout, stderr, code });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

async function helperGet(
  name: string,
  serverUrl: string,
  options: AuthFileOptions,
): Promise<Credential | undefined> {
  const result = await runHelper(name, 'get', serverUrl, options.env ?? process.env);
  if (result.code !== 0) {
    // The helpers' own "not found" answer (docker-credential-helpers `ErrCredentialsNotFound`).
    if (/credentials not found/i.test(result.stdout + result.stderr)) return undefined;
    throw new StratumError(
      'AUTH',
      redact(
        `credential helper docker-credential-${name} get ${serverUrl}: exit ${result.code ?? 'signal'}: ${result.stderr.trim().split('\n')[0] ?? ''}`,
      ),
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.stdout);
  } catch {
    throw new StratumError('AUTH', `credential helper docker-credential-${name}: output is not JSON`);
  }
  const value = record(parsed);
  const username = typeof value?.['Username'] === 'string' ? value['Username'] : '';
  const secret = typeof value?.['Secret'] === 'string' ? value['Secret'] : '';
  if (secret === '') return undefined;
  // docker-credential-helpers mark identity tokens with the user name "<token>".
  if (username === '<token>') return { kind: 'identity-token', username: '', token: secret };
  return { kind: 'basic', username, password: secret };
}

/** A copy of `auths` without any key that names `registry`. */
function withoutRegistry(auths: Record<string, unknown>, registry: string): Record<string, unknown> {
  const wanted = normaliseKey(registry);
  return Object.fromEntries(Object.entries(auths).filter(([key]) => normaliseKey(key) !== wanted));
}

async function writeConfigFile(path: string, config: ConfigFile): Promise<void> {
  try {
    // Bounded: Node's recursive mkdir never returns under /proc (util/directories.ts).
    await makeDirectories(dirname(path), 0o700);
    await writeFileAtomic(path, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
  } catch (error) {
    // A path makeDirectories could not make says so itself (a StratumError), a system error by its code.
    const reason = isStratumError(error) ? error.message : (errnoCode(error) ?? String(error));
    throw new StratumError('IO', `${path}: cannot write: ${reason}`);
  }
}

/** Saves a credential as `docker login` does: through the configured helper, else in `auths`. */
export async function storeCredential(
  registry: string,
  credential: { readonly username: string; readonly password: string },
  options: AuthFileOptions = {},
): Promise<{ readonly path: string; readonly helper?: string }> {
  const path = authFilePath(options);
  const config = await readConfigFile(path);
  const helpers = record(config['credHelpers']);
  const helperEntry = findEntry(helpers, registry);
  const helper =
    helperEntry !== undefined && typeof helperEntry[1] === 'string'
      ? helperEntry[1]
      : typeof config['credsStore'] === 'string' && config['credsStore'] !== ''
        ? config['credsStore']
        : undefined;
  const auths = withoutRegistry(record(config['auths']) ?? {}, registry);
  if (helper !== undefined) {
    const input = JSON.stringify({
      ServerURL: authKey(registry),
      Username: credential.username,
      Secret: credential.password,
    });
    const result = await runHelper(helper, 'store', input, options.env ?? process.env);
    if (result.code !== 0) {
      throw new StratumError(
        'AUTH',
        redact(`credential helper docker-credential-${helper} store: exit ${result.code ?? 'signal'}`),
      );
    }
    // Docker keeps an empty entry so `docker info` lists the registry.
    auths[authKey(registry)] = {};
  } else {
    auths[authKey(registry)] = {
      auth: Buffer.from(`${credential.username}:${credential.password}`).toString('base64'),
    };
  }
  await writeConfigFile(path, { ...config, auths });
  return helper !== undefined ? { path, helper } : { path };
}

/** Removes a registry's credential; returns false when there was none. */
export async function eraseCredential(registry: string, options: AuthFileOptions = {}): Promise<boolean> {
  const path = authFilePath(options);
  const config = await readConfigFile(path);
  const before = record(config['auths']) ?? {};
  const auths = withoutRegistry(before, registry);
  let removed = Object.keys(auths).length !== Object.keys(before).length;
  const helpers = record(config['credHelpers']);
  const helperEntry = findEntry(helpers, registry);
  const helper =
    helperEntry !== undefined && typeof helperEntry[1] === 'string'
      ? helperEntry[1]
      : typeof config['credsStore'] === 'string' && config['credsStore'] !== ''
        ? config['credsStore']
        : undefined;
  if (helper !== undefined) {
    const result = await runHelper(helper, 'erase', authKey(registry), options.env ?? process.env);
    if (result.code === 0) removed = true;
  }
  if (removed) await writeConfigFile(path, { ...config, auths });
  return removed;
}
