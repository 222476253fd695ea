import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStratumError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import { RegistryClient, login, logout, pullImage, pushImage } from '../../src/registry/index.js';
import { requireTool } from '../helpers/system.js';
import {
  makeTestLayout,
  noise,
  readTestLayout,
  startRegistry,
  tempDir,
  type RunningRegistry,
  type TestImage,
} from './harness.js';

const enabled =
  requireTool('docker-registry', 'docker-registry') &&
  requireTool('htpasswd', 'apache2-utils') &&
  requireTool('openssl', 'openssl');

const USER = 'builder';
const PASSWORD = 'pw-Zq8sV3xK9mT2';
const BASIC = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) throw new Error('expected a failure');
  return error;
}

function expectNoSecret(text: string): void {
  expect(text).not.toContain(PASSWORD);
  expect(text).not.toContain(BASIC);
}

describe.skipIf(!enabled)('registry with htpasswd Basic auth', () => {
  let registry: RunningRegistry;
  let work: string;
  let image: TestImage;
  let authFile: string;

  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { user: USER, password: PASSWORD } });
    work = await tempDir('push-basic');
    image = await makeTestLayout(join(work, 'layout'), [{ a: noise(40_000, 4) }]);
    authFile = join(work, 'docker', 'config.json');
  });
  afterAll(async () => {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('without credentials a push fails with one line naming the reference and UNAUTHORIZED', async () => {
    const error = await errorOf(
      pushImage(await readTestLayout(image.dir), `${registry.host}/app:v1`, { authFile }),
    );
    expect(isStratumError(error) && error.code).toBe('AUTH');
    expect(error.message).toContain(`docker://${registry.host}/app:v1`);
    expect(error.message).not.toContain('\n');
  });

  it('login with a wrong password is refused with the registry code and writes nothing', async () => {
    const error = await errorOf(
      login(registry.host, { username: USER, password: 'wrong-password-123' }, { authFile }),
    );
    expect(isStratumError(error) && error.code).toBe('AUTH');
    expect(error.message).toContain(`login to ${registry.host}`);
    expect(error.message).toContain('UNAUTHORIZED');
    expect(error.message).not.toContain('wrong-password-123');
    await expect(stat(authFile)).rejects.toThrow();
  });

  it('login verifies, then writes auths in Docker format with mode 0600; push and pull use it; logout removes it', async () => {
    const saved = await login(
      `http://${registry.host}/v2/`,
      { username: USER, password: PASSWORD },
      { authFile },
    );
    expect(saved.registry).toBe(registry.host);
    expect((await stat(authFile)).mode & 0o777).toBe(0o600);
    const config = JSON.parse(await readFile(authFile, 'utf8')) as {
      auths: Record<string, { auth: string }>;
    };
    expect(config.auths[registry.host]?.auth).toBe(BASIC);

    const messages: string[] = [];
    const result = await pushImage(await readTestLayout(image.dir), `${registry.host}/app:v1`, {
      authFile,
      onProgress: (e) => messages.push(JSON.stringify(e)),
    });
    expect(result.blobs.uploaded).toBe(2);
    const pulled = await pullImage(`${registry.host}/app:v1`, new BlobStore(join(work, 'store')), {
      authFile,
    });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expectNoSecret(messages.join('\n'));

    expect((await logout(registry.host, { authFile })).removed).toBe(true);
    const after = JSON.parse(await readFile(authFile, 'utf8')) as { auths: Record<string, unknown> };
    expect(after.auths[registry.host]).toBeUndefined();
    expect((await logout(registry.host, { authFile })).removed).toBe(false);
  });

  it('a wrong stored password gives a one-line AUTH error with UNAUTHORIZED and no secret in it', async () => {
    await mkdir(join(work, 'bad'), { recursive: true });
    const badFile = join(work, 'bad', 'config.json');
    const badPassword = 'bad-Secret-77xq';
    await writeFile(
      badFile,
      JSON.stringify({ auths: { [registry.host]: { username: USER, password: badPassword } } }),
    );
    const error = await errorOf(
      pullImage(`${registry.host}/app:v1`, new BlobStore(join(work, 'store2')), { authFile: badFile }),
    );
    expect(isStratumError(error) && error.code).toBe('AUTH');
    expect(error.message).toMatch(
      new RegExp(
        `^docker://${registry.host.replace(/\./g, '\\.')}/app:v1: fetching manifest: HTTP 401 UNAUTHORIZED`,
      ),
    );
    expect(error.message).not.toContain(badPassword);
    expect(error.message).not.toContain(Buffer.from(`${USER}:${badPassword}`).toString('base64'));
  });

  it('credHelpers: the docker-credential-<name> program supplies the password (DOCKER_CONFIG and PATH from env)', async () => {
    const bin = join(work, 'bin');
    const dockerConfig = join(work, 'helper-config');
    await mkdir(bin, { recursive: true });
    await mkdir(dockerConfig, { recursive: true });
    const calls = join(work, 'helper-calls');
    await writeFile(
      join(bin, 'docker-credential-stratumtest'),
      `#!/bin/sh\nread server\necho "$1 $server" >> ${calls}\nif [ "$server" = "${registry.host}" ]; then printf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASSWORD}"}' "$server"; else echo "credentials not found in native keychain"; exit 1; fi\n`,
    );
    await chmod(join(bin, 'docker-credential-stratumtest'), 0o755);
    await writeFile(
      join(dockerConfig, 'config.json'),
      JSON.stringify({ credHelpers: { [registry.host]: 'stratumtest' } }),
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DOCKER_CONFIG: dockerConfig,
      PATH: `${bin}:${process.env['PATH'] ?? ''}`,
    };
    delete env['REGISTRY_AUTH_FILE'];
    const pulled = await pullImage(`${registry.host}/app:v1`, new BlobStore(join(work, 'store3')), { env });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expect(await readFile(calls, 'utf8')).toContain(`get ${registry.host}`);
  });
});

describe.skipIf(!enabled)('registry with token auth (JWTs from a test token server)', () => {
  let registry: RunningRegistry;
  let work: string;
  let image: TestImage;
  let authFile: string;

  beforeAll(async () => {
    registry = await startRegistry({
      token: {
        users: { [USER]: PASSWORD },
        // Anonymous users may pull public/*; the builder may do anything.
        policy: (user, repository, actions) =>
          user === USER
            ? [...actions]
            : repository.startsWith('public/')
              ? actions.filter((a) => a === 'pull')
              : [],
      },
    });
    work = await tempDir('push-token');
    image = await makeTestLayout(join(work, 'layout'), [{ a: noise(30_000, 5) }, { b: noise(20_000, 6) }]);
    authFile = join(work, 'config.json');
    await writeFile(authFile, JSON.stringify({ auths: { [registry.host]: { auth: BASIC } } }));
  });
  afterAll(async () => {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('push with credentials: tokens are reused across requests until they expire', async () => {
    const client = new RegistryClient({ authFile });
    try {
      await pushImage(await readTestLayout(image.dir), `${registry.host}/public/app:v1`, { client });
      // HEAD, POST, PATCH, PUT for 3 blobs and a manifest PUT: one token covers them all.
      expect(await client.tokenRequestCount(registry.host)).toBe(1);
      expect(registry.token!.requests.at(-1)).toMatchObject({
        user: USER,
        scopes: ['repository:public/app:pull,push'],
      });
    } finally {
      await client.close();
    }
  });

  it('anonymous pull gets an anonymous token for a public repository', async () => {
    const emptyAuth = join(work, 'empty.json');
    await writeFile(emptyAuth, '{}');
    const before = registry.token!.requests.length;
    const pulled = await pullImage(`${registry.host}/public/app:v1`, new BlobStore(join(work, 'anon')), {
      authFile: emptyAuth,
    });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    const made = registry.token!.requests.slice(before);
    expect(made.length).toBeGreaterThan(0);
    expect(made.every((r) => r.user === undefined)).toBe(true);
  });

  it('anonymous push is refused: one line naming the reference and the registry code', async () => {
    const emptyAuth = join(work, 'empty.json');
    const error = await errorOf(
      pushImage(await readTestLayout(image.dir), `${registry.host}/public/other:v1`, { authFile: emptyAuth }),
    );
    expect(isStratumError(error) && error.code).toBe('AUTH');
    expect(error.message).toContain(`docker://${registry.host}/public/other:v1`);
    expect(error.message).toContain('UNAUTHORIZED');
  });

  it('a mount asks for one token whose scope lists both the target and the source repository', async () => {
    const client = new RegistryClient({ authFile });
    try {
      const before = registry.token!.requests.length;
      const result = await pushImage(await readTestLayout(image.dir), `${registry.host}/private/copy:v1`, {
        client,
        mountFrom: ['public/app'],
      });
      expect(result.blobs.mounted).toBe(3);
      const scopes = registry.token!.requests.slice(before).map((r) => r.scopes);
      expect(scopes).toContainEqual(['repository:private/copy:pull,push', 'repository:public/app:pull']);
    } finally {
      await client.close();
    }
  });

  it('login checks the password with the token service; a wrong one is a one-line AUTH error without the secret', async () => {
    const file = join(work, 'login.json');
    const error = await errorOf(
      login(registry.host, { username: USER, password: 'nope-nope-nope' }, { authFile: file }),
    );
    expect(error.message).toContain(`login to ${registry.host}`);
    expect(error.message).toContain('UNAUTHORIZED');
    expect(error.message).not.toContain('nope-nope-nope');
    await login(registry.host, { username: USER, password: PASSWORD }, { authFile: file });
    expect(await readFile(file, 'utf8')).toContain(BASIC);
  });

  it('an identity token is exchanged with the OAuth2 refresh_token grant', async () => {
    const file = join(work, 'identity.json');
    await writeFile(
      file,
      JSON.stringify({ auths: { [registry.host]: { identitytoken: 'refresh-abc123' } } }),
    );
    const before = registry.token!.requests.length;
    await pullImage(`${registry.host}/public/app:v1`, new BlobStore(join(work, 'ident')), { authFile: file });
    expect(registry.token!.requests.slice(before).some((r) => r.grantType === 'refresh_token')).toBe(true);
  });
});

describe.skipIf(!enabled)('token service answering with access_token', () => {
  it('accepts `access_token` as the token field', async () => {
    const registry = await startRegistry({
      token: { users: {}, policy: (_user, _repo, actions) => [...actions], accessTokenField: true },
    });
    const work = await tempDir('push-access-token');
    try {
      const image = await makeTestLayout(join(work, 'layout'), [{ a: 'x' }]);
      const emptyAuth = join(work, 'empty.json');
      await writeFile(emptyAuth, '{}');
      const result = await pushImage(await readTestLayout(image.dir), `${registry.host}/any/app:v1`, {
        authFile: emptyAuth,
      });
      expect(result.digest).toBe(image.manifestDigest);
    } finally {
      await registry.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});
