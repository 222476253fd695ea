/**
 * Test fixtures for the registry tests: a real distribution registry (Debian's docker-registry) on
 * 127.0.0.1, a token server that signs JWTs it trusts, a fault-injecting proxy, and small OCI
 * images made in code. Everything listens on 127.0.0.1 and is stopped by the caller.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  get as httpGet,
  request as httpRequest,
  type IncomingMessage,
} from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { BlobStore } from '../../src/oci/blob-store.js';
import type { ImageSource } from '../../src/oci/image.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `stratum-${prefix}-`));
}

async function waitForHttp(
  url: string,
  child: ChildProcess,
  log: () => string,
  tls?: RegistrySetup['tls'],
): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`registry exited: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const answered = (res: IncomingMessage): void => {
        res.resume();
        resolve(true);
      };
      const req =
        tls === undefined
          ? httpGet(url, answered)
          : httpsGet(url, { ca: tls.ca, servername: tls.name }, answered);
      req.on('error', () => {
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`registry did not start: ${log()}`);
}

export interface TokenServer {
  readonly url: string;
  readonly certPath: string;
  readonly issuer: string;
  readonly service: string;
  /** Every token request, as received: the scopes and the user (or undefined for anonymous). */
  readonly requests: { scopes: string[]; user: string | undefined; grantType?: string }[];
  stop(): Promise<void>;
}

export interface RunningRegistry {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly token?: TokenServer;
  stop(): Promise<void>;
}

export interface RegistrySetup {
  readonly htpasswd?: { readonly user: string; readonly password: string };
  /** Token auth; `users` may log in, and `policy` decides what each user (undefined: anonymous) may do. */
  readonly token?: {
    readonly users: Readonly<Record<string, string>>;
    readonly policy: (user: string | undefined, repository: string, actions: readonly string[]) => string[];
    readonly expiresIn?: number;
    /** Answer with `access_token` instead of `token`. */
    readonly accessTokenField?: boolean;
  };
  /**
   * Serve HTTPS with this certificate and key (PEM files); `ca` (PEM) signs it, and `name` is a
   * name it is issued for (the readiness check connects to 127.0.0.1 by that name).
   */
  readonly tls?: {
    readonly certificate: string;
    readonly key: string;
    readonly ca: Buffer;
    readonly name: string;
  };
}

async function startTokenServer(
  dir: string,
  setup: NonNullable<RegistrySetup['token']>,
): Promise<TokenServer> {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=stratum-test-token',
    ],
    { stdio: 'ignore' },
  );
  const key = await readFile(keyPath, 'utf8');
  const certDer = new X509Certificate(await readFile(certPath)).raw.toString('base64');
  const issuer = 'stratum-test-issuer';
  const service = 'stratum-test-registry';
  const requests: TokenServer['requests'] = [];
  const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

  const server = createHttpServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const form = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
      let user: string | undefined;
      const authorization = req.headers.authorization;
      if (authorization?.startsWith('Basic ') === true) {
        const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = decoded.slice(0, colon);
        if (setup.users[name] !== decoded.slice(colon + 1)) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }),
          );
          requests.push({ scopes: [], user: `rejected:${name}` });
          return;
        }
        user = name;
      }
      const scopes =
        req.method === 'POST'
          ? (form.get('scope') ?? '').split(' ').filter((s) => s !== '')
          : url.searchParams.getAll('scope');
      const grantType = form.get('grant_type') ?? undefined;
      requests.push({ scopes, user, ...(grantType !== undefined ? { grantType } : {}) });
      const access = scopes.flatMap((scope) => {
        const [type, name, actions] = [
          scope.slice(0, scope.indexOf(':')),
          scope.slice(scope.indexOf(':') + 1, scope.lastIndexOf(':')),
          scope.slice(scope.lastIndexOf(':') + 1),
        ];
        const granted = setup.policy(user, name, actions.split(','));
        return granted.length > 0 ? [{ type, name, actions: granted }] : [];
      });
      const now = Math.floor(Date.now() / 1000);
      const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
      const claims = {
        iss: issuer,
        sub: user ?? '',
        aud: form.get('service') ?? service,
        exp: now + (setup.expiresIn ?? 300),
        nbf: now - 1,
        iat: now,
        jti: randomBytes(8).toString('hex'),
        access,
      };
      const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const signature = createSign('RSA-SHA256').update(signingInput).sign(key);
      const token = `${signingInput}.${b64url(signature)}`;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          setup.accessTokenField === true
            ? { access_token: token, expires_in: setup.expiresIn ?? 300 }
            : { token, expires_in: setup.expiresIn ?? 300, issued_at: new Date().toISOString() },
        ),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}/token`,
    certPath,
    issuer,
    service,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

export async function startRegistry(setup: RegistrySetup = {}): Promise<RunningRegistry> {
  const dir = await tempDir('registry');
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (setup.tls !== undefined) {
    lines.push('  tls:', `    certificate: ${setup.tls.certificate}`, `    key: ${setup.tls.key}`);
  }
  let token: TokenServer | undefined;
  if (setup.htpasswd !== undefined) {
    const entry = execFileSync('htpasswd', ['-Bbn', setup.htpasswd.user, setup.htpasswd.password], {
      encoding: 'utf8',
    });
    await writeFile(join(dir, 'htpasswd'), entry);
    lines.push('auth:', '  htpasswd:', '    realm: stratum-test', `    path: ${join(dir, 'htpasswd')}`);
  } else if (setup.token !== undefined) {
    token = await startTokenServer(dir, setup.token);
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${token.url}`,
      `    service: ${token.service}`,
      `    issuer: ${token.issuer}`,
      `    rootcertbundle: ${token.certPath}`,
    );
  }
  await writeFile(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const scheme = setup.tls === undefined ? 'http' : 'https';
  await waitForHttp(`${scheme}://127.0.0.1:${port}/v2/`, child, () => output, setup.tls);
  return {
    host: `127.0.0.1:${port}`,
    port,
    dir,
    ...(token !== undefined ? { token } : {}),
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((resolve) => {
        if (child.exitCode !== null) resolve(undefined);
        else child.once('exit', resolve);
      });
      await token?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** What the fault proxy does to one request. */
export type Fault =
  | { readonly kind: 'status'; readonly status: number; readonly retryAfter?: string; readonly body?: string }
  | { readonly kind: 'drop' }
  /** Forward the request, then cut the connection after this many response body bytes. */
  | { readonly kind: 'cut-response'; readonly afterBytes: number }
  /** Forward this many request body bytes to the registry, then cut both connections. */
  | { readonly kind: 'cut-request'; readonly afterBytes: number }
  | { readonly kind: 'delay'; readonly ms: number }
  /** Flip a byte in the response body (a registry that lies about a digest). */
  | { readonly kind: 'corrupt' }
  | { readonly kind: 'content-type'; readonly value: string };

export interface ProxyRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** 1-based count of requests seen so far, this one included. */
  readonly n: number;
}

export interface FaultProxy {
  readonly host: string;
  readonly log: { method: string; url: string; fault?: string; authorization: boolean; range?: string }[];
  setPlan(plan: (req: ProxyRequest) => Fault | undefined): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  let plan: (req: ProxyRequest) => Fault | undefined = () => undefined;
  let count = 0;
  const log: FaultProxy['log'] = [];
  const server = createHttpServer((req, res) => {
    count++;
    const fault = plan({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, n: count });
    log.push({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      authorization: req.headers.authorization !== undefined,
      ...(fault ? { fault: fault.kind } : {}),
      ...(req.headers.range !== undefined ? { range: req.headers.range } : {}),
    });
    if (fault?.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, {
        'content-type': 'application/json',
        ...(fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {}),
      });
      res.end(
        fault.body ?? JSON.stringify({ errors: [{ code: 'INJECTED', message: `injected ${fault.status}` }] }),
      );
      return;
    }
    const forward = (): void => {
      const upstream = httpRequest(
        { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
        (upstreamRes) => {
          const headers = { ...upstreamRes.headers };
          if (fault?.kind === 'content-type') headers['content-type'] = fault.value;
          res.writeHead(upstreamRes.statusCode ?? 502, headers);
          let sent = 0;
          let flipped = false;
          upstreamRes.on('data', (chunk: Buffer) => {
            let out = chunk;
            if (fault?.kind === 'corrupt' && !flipped && chunk.length > 0) {
              out = Buffer.from(chunk);
              out[0] = out[0]! ^ 0xff;
              flipped = true;
            }
            if (fault?.kind === 'cut-response' && sent + out.length > fault.afterBytes) {
              res.write(out.subarray(0, Math.max(0, fault.afterBytes - sent)));
              upstreamRes.destroy();
              res.socket?.destroy();
              return;
            }
            sent += out.length;
            res.write(out);
          });
          upstreamRes.on('end', () => res.end());
          upstreamRes.on('error', () => res.socket?.destroy());
        },
      );
      upstream.on('error', () => res.socket?.destroy());
      if (fault?.kind === 'cut-request') {
        let received = 0;
        req.on('data', (chunk: Buffer) => {
          if (received >= fault.afterBytes) return;
          const part = chunk.subarray(0, fault.afterBytes - received);
          received += part.length;
          upstream.write(part);
          if (received >= fault.afterBytes) {
            // Give the registry a moment to store what it got, then cut both sides.
            setTimeout(() => {
              upstream.destroy();
              req.socket.destroy();
            }, 100);
          }
        });
        req.on('end', () => upstream.end());
      } else {
        req.pipe(upstream);
      }
    };
    if (fault?.kind === 'delay') setTimeout(forward, fault.ms);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${address.port}`,
    log,
    setPlan(next) {
      plan = next;
      count = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

export interface TestImage {
  readonly dir: string;
  readonly tag: string;
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
}

function sha256(data: Buffer): `sha256:${string}` {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function tarOf(files: Readonly<Record<string, string | Buffer>>): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => {
    chunks.push(chunk as Buffer);
  });
  const done = new Promise<void>((resolve) => {
    pack.on('end', () => {
      resolve();
    });
  });
  for (const [name, content] of Object.entries(files)) {
    pack.entry({ name, mode: 0o644, mtime: new Date(0) }, content);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Writes an OCI layout with one image of gzip layers made from `layers` (file name → content). */
export async function makeTestLayout(
  dir: string,
  layers: readonly Readonly<Record<string, string | Buffer>>[],
  options: { tag?: string; architecture?: string; dockerTypes?: boolean } = {},
): Promise<TestImage> {
  const tag = options.tag ?? 'latest';
  const store = new BlobStore(dir);
  const layerDescriptors: Descriptor[] = [];
  const diffIds: `sha256:${string}`[] = [];
  for (const files of layers) {
    const tarBytes = await tarOf(files);
    diffIds.push(sha256(tarBytes));
    const gz = gzipSync(tarBytes);
    const info = await store.putBytes(gz);
    layerDescriptors.push({
      mediaType:
        options.dockerTypes === true
          ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
          : 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: info.digest,
      size: info.size,
    });
  }
  const config: ImageConfig = {
    architecture: options.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map(() => ({ created_by: 'stratum test' })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configInfo = await store.putBytes(configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType:
      options.dockerTypes === true
        ? 'application/vnd.docker.distribution.manifest.v2+json'
        : 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType:
        options.dockerTypes === true
          ? 'application/vnd.docker.container.image.v1+json'
          : 'application/vnd.oci.image.config.v1+json',
      digest: configInfo.digest,
      size: configInfo.size,
    },
    layers: layerDescriptors,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestInfo = await store.putBytes(manifestBytes);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: manifest.mediaType!,
        digest: manifestInfo.digest,
        size: manifestInfo.size,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { dir, tag, manifestDigest: manifestInfo.digest, manifest, config };
}

/** A minimal OCI layout reader for the tests (the real readers live in src/oci). */
export async function readTestLayout(dir: string, tag?: string): Promise<ImageSource> {
  const store = new BlobStore(dir);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  const descriptor =
    index.manifests.find(
      (entry) => tag === undefined || entry.annotations?.['org.opencontainers.image.ref.name'] === tag,
    ) ?? index.manifests[0]!;
  const manifestRaw = await store.readBytes(descriptor.digest, { verify: true, size: descriptor.size });
  const manifest = JSON.parse(manifestRaw.toString('utf8')) as ImageManifest;
  const configRaw = await store.readBytes(manifest.config.digest, {
    verify: true,
    size: manifest.config.size,
  });
  return {
    name: `oci:${dir}`,
    descriptor,
    manifest: { value: manifest, raw: manifestRaw, digest: descriptor.digest },
    config: {
      value: JSON.parse(configRaw.toString('utf8')) as ImageConfig,
      raw: configRaw,
      digest: manifest.config.digest,
    },
    openBlob: (blob) => Promise.resolve(store.read(blob.digest, { verify: true, size: blob.size })),
    close: () => Promise.resolve(),
  };
}

/** Pseudo-random bytes (incompressible), deterministic per seed. */
export function noise(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}
