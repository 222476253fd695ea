import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, requireTool } from '../helpers/system.js';
import {
  makeTestLayout,
  noise,
  startRegistry,
  tempDir,
  type RunningRegistry,
  type TestImage,
} from './harness.js';

/**
 * A registry whose TLS certificate only a private CA signs, as a company's registry: stratum
 * trusts it through Node's NODE_EXTRA_CA_CERTS (src/registry/README.md), as root and rootless,
 * and refuses it without, in one line. The registry is reached by a name (a host that is not
 * localhost or 127.0.0.0/8 is verified, those are not), which a private /etc/hosts gives: each
 * stratum runs in a mount namespace of its own with that file bound over /etc/hosts.
 */
const BIN = resolve(import.meta.dirname, '../../bin/stratum.js');
const NAME = 'registry.stratum.test';

const enabled =
  isRoot &&
  requireTool('docker-registry', 'docker-registry') &&
  requireTool('openssl', 'openssl') &&
  requireTool('unshare', 'util-linux') &&
  requireTool('setpriv', 'util-linux');

describe.skipIf(!enabled)('a registry signed by a private CA (NODE_EXTRA_CA_CERTS)', () => {
  let dir: string;
  let registry: RunningRegistry;
  let port: number;
  let image: TestImage;

  beforeAll(async () => {
    dir = await tempDir('custom-ca');
    chmodSync(dir, 0o755);
    const openssl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    };
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=stratum test CA',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    );
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${NAME}`,
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
    );
    writeFileSync(join(dir, 'san.ext'), `subjectAltName=DNS:${NAME}\n`);
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'san.ext',
      '-out',
      'server.pem',
    );
    chmodSync(join(dir, 'ca.pem'), 0o644);
    writeFileSync(join(dir, 'hosts'), `127.0.0.1 localhost ${NAME}\n`, { mode: 0o644 });
    registry = await startRegistry({
      tls: {
        certificate: join(dir, 'server.pem'),
        key: join(dir, 'server.key'),
        ca: readFileSync(join(dir, 'ca.pem')),
        name: NAME,
      },
    });
    port = registry.port;
    image = await makeTestLayout(join(dir, 'layout'), [{ f: noise(5_000, 7) }]);
    execFileSync('chmod', ['-R', 'a+rX', join(dir, 'layout')]);
    mkdirSync(join(dir, 'ctx'), { mode: 0o755 });
    // The base comes over TLS from the registry, and so does an ADD of its /v2/ answer ({}).
    writeFileSync(
      join(dir, 'ctx/Dockerfile'),
      `FROM ${NAME}:${port}/ca/app:v1\nADD https://${NAME}:${port}/v2/ /v2.json\nLABEL trusted=yes\n`,
    );
    chmodSync(join(dir, 'ctx/Dockerfile'), 0o644);
    mkdirSync(join(dir, 'home'), { mode: 0o777 });
    chmodSync(join(dir, 'home'), 0o777);
  });
  afterAll(async () => {
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** stratum with the private /etc/hosts, as root or as nobody, with or without the CA. */
  function stratum(args: readonly string[], options: { ca: boolean; user?: 'nobody' }) {
    const asUser =
      options.user === 'nobody' ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: join(dir, 'home'),
      XDG_CACHE_HOME: join(dir, 'home', options.user ?? 'root', 'xdg'),
      STRATUM_CACHE_DIR: join(dir, 'home', options.user ?? 'root', 'cache'),
      STRATUM_DATA_DIR: join(dir, 'home', options.user ?? 'root', 'data'),
    };
    delete env['NODE_EXTRA_CA_CERTS'];
    if (options.ca) env['NODE_EXTRA_CA_CERTS'] = join(dir, 'ca.pem');
    return spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount --bind "$0" /etc/hosts && exec "$@"',
        join(dir, 'hosts'),
        ...asUser,
        process.execPath,
        BIN,
        ...args,
      ],
      { env, encoding: 'utf8', timeout: 120_000 },
    );
  }

  it('with the CA: copy pushes to it and inspect reads it back, by name', () => {
    const reference = `docker://${NAME}:${port}/ca/app:v1`;
    const pushed = stratum(['copy', `oci:${image.dir}:${image.tag}`, reference], { ca: true });
    expect(pushed.status, pushed.stderr).toBe(0);
    const inspected = stratum(['inspect', '--json', reference], { ca: true });
    expect(inspected.status, inspected.stderr).toBe(0);
    expect(JSON.parse(inspected.stdout).digest).toBe(image.manifestDigest);
  });

  it('without it: one line naming the registry and the certificate, exit 1', () => {
    const result = stratum(['inspect', `docker://${NAME}:${port}/ca/app:v1`], { ca: false });
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toContain(NAME);
    expect(lines[0]).toMatch(/certificate/i);
    // and what to do about it
    expect(lines[0]).toContain('NODE_EXTRA_CA_CERTS=CA.pem');
    // ADD of a URL there says why too (undici's own message is only "fetch failed").
    mkdirSync(join(dir, 'add-ctx'), { mode: 0o755 });
    writeFileSync(
      join(dir, 'add-ctx/Dockerfile'),
      `FROM scratch\nADD https://${NAME}:${port}/v2/ /v2.json\n`,
    );
    const added = stratum(['build', join(dir, 'add-ctx'), '--progress', 'quiet'], { ca: false });
    expect(added.status).toBe(1);
    expect(added.stderr.split('\n')[0]).toMatch(
      /ADD https:\/\/registry\.stratum\.test:\d+\/v2\/: download failed: .*certificate/,
    );
  });

  it('without it, --insecure-registry NAME:PORT reaches it without verifying (inspect, copy)', () => {
    const host = `${NAME}:${port}`;
    const inspected = stratum(
      ['inspect', '--json', '--insecure-registry', host, `docker://${host}/ca/app:v1`],
      {
        ca: false,
      },
    );
    expect(inspected.status, inspected.stderr).toBe(0);
    expect(JSON.parse(inspected.stdout).digest).toBe(image.manifestDigest);
    const copied = stratum(
      ['copy', '--insecure-registry', host, `docker://${host}/ca/app:v1`, `docker://${host}/ca/copied:v1`],
      { ca: false },
    );
    expect(copied.status, copied.stderr).toBe(0);
    expect(copied.stdout.trim()).toBe(image.manifestDigest);
  });

  it('a rootless build (stratum started again in a user namespace) pulls its base and ADDs a URL with the CA', () => {
    const out = join(dir, 'home', 'out-nobody');
    const args = ['build', join(dir, 'ctx'), '--progress', 'quiet', '--output', `oci:${out}:x`];
    const built = stratum(args, { ca: true, user: 'nobody' });
    expect(built.status, built.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: unknown[] };
    expect(index.manifests).toHaveLength(1);
    const refused = stratum([...args.slice(0, -1), `oci:${out}-refused:x`], { ca: false, user: 'nobody' });
    expect(refused.status, refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(/certificate/i);
  });
});
