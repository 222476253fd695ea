import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isStratumError } from '../../src/errors.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import {
  RegistryClient,
  RepositoryClient,
  pullImage,
  pushImage,
  type RetryPolicy,
} from '../../src/registry/index.js';
import { requireTool } from '../helpers/system.js';
import {
  makeTestLayout,
  noise,
  readTestLayout,
  startFaultProxy,
  startRegistry,
  tempDir,
  type Fault,
  type FaultProxy,
  type RunningRegistry,
  type TestImage,
} from './harness.js';

const enabled = requireTool('docker-registry', 'docker-registry');

/** Short delays so the tests stay fast; the bound (attempts) is the production default. */
const retry: Partial<RetryPolicy> = { baseDelayMs: 10, maxDelayMs: 50 };

describe.skipIf(!enabled)('registry behind a fault-injecting proxy', () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let image: TestImage;
  let repoCounter = 0;
  const nextRepo = (): string => `faults/r${++repoCounter}`;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.port);
    work = await tempDir('push-faults');
    image = await makeTestLayout(join(work, 'layout'), [
      { big: noise(400_000, 11) },
      { small: noise(20_000, 12) },
    ]);
  });
  afterAll(async () => {
    await proxy.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    proxy.setPlan(() => undefined);
    proxy.log.length = 0;
    // Each push makes its own client and context: no mounts from earlier tests.
  });

  async function manifestOnRegistry(repository: string, tag: string): Promise<boolean> {
    const client = new RegistryClient();
    try {
      return (await new RepositoryClient(client, registry.host, repository).headManifest(tag)) !== undefined;
    } finally {
      await client.close();
    }
  }

  it('500s and 503s on every other request: push and pull still succeed within the retry bound', async () => {
    proxy.setPlan((req) =>
      req.n % 3 === 0 ? { kind: 'status', status: req.n % 6 === 0 ? 503 : 500 } : undefined,
    );
    const repo = nextRepo();
    const result = await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    expect(result.digest).toBe(image.manifestDigest);
    const pulled = await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's1')), { retry });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expect(proxy.log.filter((entry) => entry.fault === 'status').length).toBeGreaterThan(5);
  });

  it('429 with Retry-After is honoured before the retry', async () => {
    let sent = false;
    proxy.setPlan((req) => {
      if (req.method === 'PUT' && req.url.includes('/manifests/') && !sent) {
        sent = true;
        return {
          kind: 'status',
          status: 429,
          retryAfter: '1',
          body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
        };
      }
      return undefined;
    });
    const started = Date.now();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${nextRepo()}:v1`, { retry });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('dropped connections on HEAD and GET are retried', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    let dropped = 0;
    proxy.setPlan((req) =>
      (req.method === 'GET' || req.method === 'HEAD') && req.n % 2 === 1 && dropped++ < 6
        ? { kind: 'drop' }
        : undefined,
    );
    const pulled = await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's2')), { retry });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expect(dropped).toBeGreaterThan(1);
  });

  it('manifest GETs that are reset, cut short or answered 503/429 are retried; the pull succeeds', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    const faults: Fault[] = [
      { kind: 'drop' },
      { kind: 'cut-response', afterBytes: 40 },
      { kind: 'status', status: 503 },
      { kind: 'status', status: 429, retryAfter: '0' },
    ];
    let next = 0;
    proxy.setPlan((req) =>
      req.method === 'GET' && req.url.includes('/manifests/') && next < faults.length
        ? faults[next++]
        : undefined,
    );
    const pulled = await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's-manifest')), {
      retry,
    });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expect(next).toBe(faults.length);
    const manifestGets = proxy.log.filter(
      (entry) => entry.method === 'GET' && entry.url.includes('/manifests/'),
    );
    expect(manifestGets.filter((entry) => entry.fault !== undefined)).toHaveLength(faults.length);
    expect(manifestGets.filter((entry) => entry.fault === undefined).length).toBeGreaterThanOrEqual(1);
  });

  it('a manifest GET cut short every time gives up within the bound, naming the reference', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    proxy.setPlan((req) =>
      req.method === 'GET' && req.url.includes('/manifests/')
        ? { kind: 'cut-response', afterBytes: 40 }
        : undefined,
    );
    const error = await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's-manifest2')), {
      retry,
    }).catch((caught: unknown) => caught);
    expect(isStratumError(error) && error.code).toBe('REGISTRY');
    expect(String(error)).toContain(`${repo}:v1: fetching manifest`);
    const manifestGets = proxy.log.filter(
      (entry) => entry.method === 'GET' && entry.url.includes('/manifests/'),
    );
    expect(manifestGets.length).toBeGreaterThan(1);
    expect(manifestGets.length).toBeLessThanOrEqual(5);
  });

  it('a connection cut in the middle of a blob upload: the blob is resumed or restarted, the push completes', async () => {
    let cut = false;
    proxy.setPlan((req) => {
      if (req.method === 'PATCH' && Number(req.headers['content-length']) > 300_000 && !cut) {
        cut = true;
        return { kind: 'cut-request', afterBytes: 150_000 };
      }
      return undefined;
    });
    const repo = nextRepo();
    const result = await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, {
      retry,
      concurrency: 1,
    });
    expect(result.digest).toBe(image.manifestDigest);
    expect(cut).toBe(true);
    const patches = proxy.log.filter((entry) => entry.method === 'PATCH');
    expect(patches.length).toBeGreaterThan(image.manifest.layers.length + 1);
    expect(await manifestOnRegistry(repo, 'v1')).toBe(true);
  });

  it('a chunked push with a failure after every chunk completes: each chunk taken resets the failure count (issue 26)', async () => {
    // Every other PATCH fails: 25 chunks of the 400 kB layer see 24 failures in all, never two in
    // a row. With one budget of 5 for the whole blob, the push gave up after the fifth.
    let patches = 0;
    proxy.setPlan((req) => {
      if (req.method !== 'PATCH') return undefined;
      patches++;
      return patches % 2 === 0 ? { kind: 'status', status: 500 } : undefined;
    });
    const repo = nextRepo();
    const result = await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, {
      retry,
      concurrency: 1,
      chunkSize: 16 * 1024,
    });
    expect(result.digest).toBe(image.manifestDigest);
    expect(proxy.log.filter((entry) => entry.fault === 'status').length).toBeGreaterThan(5 * 2);
    // Each failed chunk is resumed where the registry stands, never restarted from a new POST.
    expect(proxy.log.filter((entry) => entry.method === 'POST').length).toBe(
      image.manifest.layers.length + 1,
    );
    expect(await manifestOnRegistry(repo, 'v1')).toBe(true);
  });

  it('a chunked push that stops making progress still gives up within the bound', async () => {
    // The first two chunks go through; then every PATCH fails.
    let patches = 0;
    proxy.setPlan((req) => {
      if (req.method !== 'PATCH') return undefined;
      patches++;
      return patches > 2 ? { kind: 'status', status: 500 } : undefined;
    });
    const error = (await pushImage(await readTestLayout(image.dir), `${proxy.host}/${nextRepo()}:v1`, {
      retry,
      concurrency: 1,
      chunkSize: 16 * 1024,
    }).catch((e: unknown) => e)) as Error;
    expect(isStratumError(error)).toBe(true);
    expect(error.message).toMatch(/gave up after 5 failed tries/);
    // Two chunks, then 5 failures in a row for the blob being sent, at most.
    expect(proxy.log.filter((entry) => entry.method === 'PATCH').length).toBeLessThanOrEqual(2 + 2 * 5);
  });

  it('a connection cut in the middle of a blob download resumes with a Range request', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    const big = image.manifest.layers[0]!;
    let cut = false;
    proxy.setPlan((req) => {
      if (req.method === 'GET' && req.url.includes(big.digest) && !cut) {
        cut = true;
        return { kind: 'cut-response', afterBytes: 100_000 };
      }
      return undefined;
    });
    const pulled = await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's3')), { retry });
    expect(pulled.manifest.digest).toBe(image.manifestDigest);
    expect(
      proxy.log.some(
        (entry) =>
          entry.url.includes(big.digest) && entry.range !== undefined && /^bytes=\d+-$/.test(entry.range),
      ),
    ).toBe(true);
  });

  it('slow responses still complete', async () => {
    proxy.setPlan(() => ({ kind: 'delay', ms: 60 }));
    const result = await pushImage(await readTestLayout(image.dir), `${proxy.host}/${nextRepo()}:v1`, {
      retry,
    });
    expect(result.digest).toBe(image.manifestDigest);
  });

  it('an upload that keeps failing gives up within the bound with one line naming the reference and the code, and leaves no manifest', async () => {
    proxy.setPlan((req) => (req.method === 'PATCH' ? { kind: 'status', status: 500 } : undefined));
    const repo = nextRepo();
    const error = (await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, {
      retry,
    }).catch((e: unknown) => e)) as Error;
    expect(isStratumError(error)).toBe(true);
    expect(error.message).toContain(`docker://${proxy.host}/${repo}:v1`);
    expect(error.message).toContain('INJECTED');
    expect(error.message).not.toContain('\n');
    expect(proxy.log.filter((entry) => entry.method === 'PATCH').length).toBeLessThanOrEqual(3 * 5);
    expect(proxy.log.some((entry) => entry.url.includes('/manifests/'))).toBe(false);
    expect(await manifestOnRegistry(repo, 'v1')).toBe(false);
  });

  it('a registry that lies about a blob: DIGEST_MISMATCH naming the reference, not a retry loop', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    const small = image.manifest.layers[1]!;
    proxy.setPlan((req) =>
      req.method === 'GET' && req.url.includes(small.digest) ? { kind: 'corrupt' } : undefined,
    );
    const error = (await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's4')), {
      retry,
    }).catch((e: unknown) => e)) as Error;
    expect(isStratumError(error) && error.code).toBe('DIGEST_MISMATCH');
    expect(error.message).toContain(`docker://${proxy.host}/${repo}:v1`);
    expect(error.message).toContain(small.digest);
    expect(
      proxy.log.filter((entry) => entry.method === 'GET' && entry.url.includes(small.digest)).length,
    ).toBe(1);
  });

  it('a lazily opened blob that the registry corrupts fails its stream with DIGEST_MISMATCH', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    const client = new RegistryClient({ retry });
    try {
      const small = image.manifest.layers[1]!;
      proxy.setPlan((req) =>
        req.method === 'GET' && req.url.includes(small.digest) ? { kind: 'corrupt' } : undefined,
      );
      const stream = new RepositoryClient(client, proxy.host, repo).fetchBlob(small.digest, {
        size: small.size,
      });
      const error = (await (async () => {
        for await (const _chunk of stream) {
          /* drain */
        }
      })().catch((e: unknown) => e)) as Error;
      expect(isStratumError(error) && error.code).toBe('DIGEST_MISMATCH');
      expect(error.message).toContain(small.digest);
    } finally {
      await client.close();
    }
  });

  it('a manifest served with an unsupported (schema 1) media type is UNSUPPORTED, naming the reference', async () => {
    const repo = nextRepo();
    await pushImage(await readTestLayout(image.dir), `${proxy.host}/${repo}:v1`, { retry });
    proxy.setPlan((req) =>
      req.url.includes('/manifests/')
        ? { kind: 'content-type', value: 'application/vnd.docker.distribution.manifest.v1+prettyjws' }
        : undefined,
    );
    const error = (await pullImage(`${proxy.host}/${repo}:v1`, new BlobStore(join(work, 's5')), {
      retry,
    }).catch((e: unknown) => e)) as Error;
    expect(isStratumError(error) && error.code).toBe('UNSUPPORTED');
    expect(error.message).toBe(
      `docker://${proxy.host}/${repo}:v1: unsupported manifest media type application/vnd.docker.distribution.manifest.v1+prettyjws (stratum reads OCI and Docker schema 2 images)`,
    );
  });
});
