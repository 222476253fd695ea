import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MountSnapshot } from '../../src/cache/mount-export.js';
import { parseCacheSpec } from '../../src/cache/remote/cache-ref.js';
import { CacheExporter, type ExportOptions } from '../../src/cache/remote/export.js';
import { CACHE_ARTIFACT_TYPE, CACHE_CONFIG_MEDIA_TYPE } from '../../src/cache/remote/format.js';
import { ImportedCache } from '../../src/cache/remote/import.js';
import { cacheTransport, openImportedCache } from '../../src/cache/remote/remote-caches.js';
import type { CacheTransport } from '../../src/cache/remote/transport.js';
import type { StepRecord } from '../../src/cache/step-record.js';
import type { CacheEntry } from '../../src/cache/store.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import type { LayerRef } from '../../src/oci/image.js';
import { MediaType, type Digest, type ImageManifest } from '../../src/oci/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { pushImage } from '../../src/registry/push.js';
import { writeOciLayout } from '../../src/transport/layout/writer.js';
import { requireTool } from '../helpers/system.js';
import { makeTestLayout, readTestLayout, startRegistry, type RunningRegistry } from '../registry/harness.js';

/**
 * One table, two transports: every import and export case runs against a cache in an OCI layout
 * directory (`type=local`) and in a real registry (docker-registry on 127.0.0.1), through the
 * same cache-artifact code. Where the two differ on purpose, the table says how.
 */

/** One cache (a directory, or a tag of a repository) a case writes and reads. */
interface Place {
  /** `--cache-from` and `--cache-to` values naming it; `attributes` are appended (`,mounts=true`). */
  readonly from: string;
  to(attributes?: string): string;
  /** Flips a byte of a blob where the cache keeps it. */
  corrupt(digest: Digest): void;
  /** Removes a blob from the cache, as a registry's GC or a hand in the directory would. */
  lose(digest: Digest): Promise<void>;
  /** Puts an image (not a cache) under the cache's tag; returns its manifest digest. */
  putImage(): Promise<string>;
}

interface TransportCase {
  readonly kind: 'local' | 'registry';
  readonly available: boolean;
  place(name: string): Place;
  /** A cache never written: a directory that is not there is worth a warning, a missing tag not. */
  readonly absentWarns: boolean;
  /**
   * An export over older entries one of whose blobs the cache lost: a directory drops that entry
   * (checking is a stat); a registry refuses the manifest, and only this build's entries stay.
   */
  readonly lostBlobDrops: 'that entry' | 'older entries';
}

const withRegistry = requireTool('docker-registry', 'docker-registry');
let root: string;
let registry: RunningRegistry | undefined;
let client: RegistryClient;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'stratum-cache-transports-'));
  client = new RegistryClient();
  if (withRegistry) registry = await startRegistry();
});

afterAll(async () => {
  await client.close();
  await registry?.stop();
  rmSync(root, { recursive: true, force: true });
});

function flipByte(file: string): void {
  const bytes = readFileSync(file);
  const middle = bytes.length >> 1;
  bytes[middle] = bytes[middle]! ^ 0xff;
  writeFileSync(file, bytes);
}

const transports: readonly TransportCase[] = [
  {
    kind: 'local',
    available: true,
    absentWarns: true,
    lostBlobDrops: 'that entry',
    place(name) {
      const dir = join(root, 'local', name);
      const blob = (digest: Digest): string => join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
      return {
        from: `type=local,src=${dir}`,
        to: (attributes = '') => `type=local,dest=${dir}${attributes}`,
        corrupt: (digest) => {
          flipByte(blob(digest));
        },
        lose: (digest) => {
          unlinkSync(blob(digest));
          return Promise.resolve();
        },
        putImage: async () => {
          const image = await makeTestLayout(join(root, 'images', name), [{ 'etc/x': `${name}\n` }]);
          await writeOciLayout(await readTestLayout(image.dir), dir, ['stratum-cache']);
          return image.manifestDigest;
        },
      };
    },
  },
  {
    kind: 'registry',
    available: withRegistry,
    absentWarns: false,
    lostBlobDrops: 'older entries',
    place(name) {
      const host = registry!.host;
      const ref = `${host}/conformance/${name}:main`;
      return {
        from: `registry:${ref}`,
        to: (attributes = '') => `type=registry,ref=${ref}${attributes}`,
        // The registry's storage is shared by its repositories: each case's layers are its own.
        corrupt: (digest) => {
          const hex = digest.slice('sha256:'.length);
          flipByte(join(registry!.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'));
        },
        lose: async (digest) => {
          const response = await fetch(`http://${host}/v2/conformance/${name}/blobs/${digest}`, {
            method: 'DELETE',
          });
          expect(response.status).toBe(202);
        },
        putImage: async () => {
          const image = await makeTestLayout(join(root, 'images', name), [{ 'etc/x': `${name}\n` }]);
          await pushImage(await readTestLayout(image.dir), ref);
          return image.manifestDigest;
        },
      };
    },
  },
];

function digestOf(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A gzip layer of its own content, put into `store`. */
async function makeLayer(store: BlobStore, content: string): Promise<LayerRef> {
  const raw = Buffer.from(content.repeat(200));
  const gz = gzipSync(raw);
  const digest = digestOf(gz);
  await store.putBytes(gz, digest);
  return {
    descriptor: { mediaType: MediaType.ociLayerGzip, digest, size: gz.length },
    diffId: digestOf(raw),
  };
}

function entry(name: string, layer: LayerRef | null): CacheEntry {
  return {
    key: digestOf(Buffer.from(name)),
    layer,
    createdBy: `RUN ${name}`,
    instruction: `RUN ${name}`,
    created: '2024-01-01T00:00:00.000Z',
  };
}

function record(of: CacheEntry, step: string): StepRecord {
  return {
    dockerfile: 'Dockerfile',
    target: '',
    step,
    key: of.key,
    components: [{ name: 'instruction', value: of.instruction }],
  };
}

function mount(id: string, layer: LayerRef): MountSnapshot {
  return { id, uid: 0, gid: 0, mode: 0o755, layer, size: 1000 };
}

function exporterFor(spec: string): CacheExporter {
  const ref = parseCacheSpec(spec, 'to');
  return new CacheExporter(cacheTransport(ref, client, 'to'), ref);
}

async function exportTo(
  spec: string,
  entries: readonly CacheEntry[],
  store: BlobStore,
  options: ExportOptions = {},
) {
  const exporter = exporterFor(spec);
  for (const one of entries) exporter.add(one);
  return exporter.flush(store, options);
}

/** The transport a `--cache-from` uses, with every blob it reads noted (the real one underneath). */
function observed(spec: string): CacheTransport & { readonly reads: Digest[] } {
  const inner = cacheTransport(parseCacheSpec(spec, 'from'), client, 'from');
  const reads: Digest[] = [];
  return {
    name: inner.name,
    cheapBlobChecks: inner.cheapBlobChecks,
    reads,
    readManifest: (signal) => inner.readManifest(signal),
    readBlob: (descriptor, signal) => {
      reads.push(descriptor.digest);
      return inner.readBlob(descriptor, signal);
    },
    hasBlob: (descriptor, signal) => inner.hasBlob(descriptor, signal),
    putBlob: (descriptor, from, options) => inner.putBlob(descriptor, from, options),
    putManifest: (bytes, signal) => inner.putManifest(bytes, signal),
  };
}

async function keysOf(spec: string): Promise<string[]> {
  const source = await openImportedCache(spec);
  try {
    return [...source.keys()];
  } finally {
    await source.close();
  }
}

for (const transport of transports) {
  describe.skipIf(!transport.available)(`the cache artifact through ${transport.kind}`, () => {
    /** Machine A's blob store (where the layers are made) and a fresh one per reader. */
    const stores = (name: string): { a: BlobStore; b: BlobStore } => ({
      a: new BlobStore(join(root, 'stores', transport.kind, name, 'a')),
      b: new BlobStore(join(root, 'stores', transport.kind, name, 'b')),
    });
    const content = (name: string, n: number): string => `${transport.kind}/${name}/${n}\n`;

    it('what one machine exports another imports: every entry with its layer byte for byte, its record, and the mounts', async () => {
      const place = transport.place('round-trip');
      const { a, b } = stores('round-trip');
      const [one, two, pkg] = await Promise.all([1, 2, 3].map((n) => makeLayer(a, content('round-trip', n))));
      const entries = [entry('one', one!), entry('nothing', null), entry('two', two!)];
      const exporter = exporterFor(place.to(',mounts=true'));
      for (const [n, each] of entries.entries()) exporter.add(each, record(each, `0/${n}`));
      exporter.addMount(mount('pkg', pkg!));
      const exported = await exporter.flush(a);
      expect(exported).toMatchObject({ layers: 2, existed: 0, entries: 3, mounts: 1, mountBlobsSent: 1 });
      expect(exported.uploaded + exported.mounted).toBe(2);

      // The artifact: an OCI manifest of the cache's artifactType listing every blob it needs kept.
      const reader = cacheTransport(parseCacheSpec(place.from, 'from'), client, 'from');
      const fetched = await reader.readManifest();
      expect(digestOf(fetched!.bytes)).toBe(exported.digest);
      const manifest = JSON.parse(fetched!.bytes.toString('utf8')) as ImageManifest;
      expect([manifest.mediaType, manifest.artifactType, manifest.config.mediaType]).toEqual([
        MediaType.ociManifest,
        CACHE_ARTIFACT_TYPE,
        CACHE_CONFIG_MEDIA_TYPE,
      ]);
      // This build's last step first, then the mounts' blobs.
      expect(manifest.layers.map((layer) => layer.digest)).toEqual(
        [two, one, pkg].map((layer) => layer!.descriptor.digest),
      );

      const source = await openImportedCache(place.from);
      try {
        expect(source.warnings).toEqual([]);
        expect(source.size).toBe(3);
        for (const [n, each] of entries.entries()) {
          expect(await source.get(each.key, b)).toEqual(each);
          if (each.layer !== null) {
            const digest = each.layer.descriptor.digest;
            expect(readFileSync(b.path(digest))).toEqual(readFileSync(a.path(digest)));
          }
          const stored = [...source.stored()].find((candidate) => candidate.key === each.key);
          expect(stored?.record).toEqual(record(each, `0/${n}`));
        }
        expect(await source.get(digestOf(Buffer.from('absent')), b)).toBeUndefined();
        expect(source.hasMount(mount('pkg', pkg!))).toBe(true);
        expect(source.hasMount({ id: 'pkg', uid: 1, gid: 0, mode: 0o755 })).toBe(false);
        expect(await source.getMount(mount('pkg', pkg!), b)).toMatchObject({ id: 'pkg', layer: pkg });
        expect(readFileSync(b.path(pkg!.descriptor.digest))).toEqual(
          readFileSync(a.path(pkg!.descriptor.digest)),
        );
      } finally {
        await source.close();
      }

      // Exported again: every blob is there already; nothing is sent.
      const again = exporterFor(place.to(',mounts=true'));
      for (const each of entries) again.add(each);
      again.addMount(mount('pkg', pkg!));
      expect(await again.flush(a)).toMatchObject({
        layers: 2,
        uploaded: 0,
        mounted: 0,
        existed: 2,
        mountBlobsSent: 0,
      });
    });

    it('exports to one cache accumulate newest first, capped at maxEntries', async () => {
      const place = transport.place('merge');
      const { a } = stores('merge');
      const named = (...names: string[]): CacheEntry[] => names.map((name) => entry(name, null));
      expect((await exportTo(place.to(), named('a1', 'a2', 'a3'), a)).entries).toBe(3);
      expect((await exportTo(place.to(), named('b1', 'a2'), a)).entries).toBe(4);
      expect(await keysOf(place.from)).toEqual(named('a2', 'b1', 'a3', 'a1').map((each) => each.key));
      expect((await exportTo(place.to(), named('c1'), a, { maxEntries: 3 })).entries).toBe(3);
      expect(await keysOf(place.from)).toEqual(named('c1', 'a2', 'b1').map((each) => each.key));
    });

    it(`a cache never written is empty${transport.absentWarns ? ', with a warning' : ', without a warning'}`, async () => {
      const place = transport.place('never-written');
      const warnings: string[] = [];
      const source = await openImportedCache(place.from, { onWarning: (line) => warnings.push(line) });
      expect(source.size).toBe(0);
      expect(await source.get(digestOf(Buffer.from('x')), stores('never-written').b)).toBeUndefined();
      await source.close();
      if (transport.absentWarns) {
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatch(/^cache \S+never-written\S*: not used \(/);
      } else {
        expect(warnings).toEqual([]);
      }
    });

    it('a layer already in the blob store is not read again', async () => {
      const place = transport.place('present');
      const { a, b } = stores('present');
      const [present, absent] = await Promise.all([1, 2].map((n) => makeLayer(a, content('present', n))));
      const entries = [entry('present', present!), entry('absent', absent!)];
      await exportTo(place.to(), entries, a);
      await b.putBytes(readFileSync(a.path(present!.descriptor.digest)), present!.descriptor.digest);
      const reader = observed(place.from);
      const source = await ImportedCache.open(reader);
      expect(await source.get(entries[0]!.key, b)).toEqual(entries[0]);
      expect(await source.get(entries[1]!.key, b)).toEqual(entries[1]);
      // The config, then the absent layer; never the present one.
      expect(reader.reads).toEqual([expect.stringMatching(/^sha256:/), absent!.descriptor.digest]);
    });

    it('an entry whose diff_id does not match its layer is a miss with one warning, stores nothing, and is not fetched again', async () => {
      const place = transport.place('lie');
      const { a, b } = stores('lie');
      const layer = await makeLayer(a, content('lie', 1));
      const lie = entry('lie', { ...layer, diffId: digestOf(Buffer.from('not this')) });
      await exportTo(place.to(), [lie], a);
      const reader = observed(place.from);
      const warnings: string[] = [];
      const source = await ImportedCache.open(reader, { onWarning: (line) => warnings.push(line) });
      expect(await source.get(lie.key, b)).toBeUndefined();
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/not used, step runs .*uncompressed content is sha256:/);
      expect(await b.has(layer.descriptor.digest)).toBe(false);
      expect(await source.get(lie.key, b)).toBeUndefined();
      expect(warnings).toHaveLength(1);
      expect(reader.reads.filter((digest) => digest === layer.descriptor.digest)).toHaveLength(1);
    });

    it('a corrupted blob in the cache is a miss with a warning naming it; the other entries still hit', async () => {
      const place = transport.place('corrupt');
      const { a, b } = stores('corrupt');
      const [victim, other] = await Promise.all([1, 2].map((n) => makeLayer(a, content('corrupt', n))));
      const entries = [entry('victim', victim!), entry('other', other!)];
      await exportTo(place.to(), entries, a);
      place.corrupt(victim!.descriptor.digest);
      const warnings: string[] = [];
      const source = await openImportedCache(place.from, { onWarning: (line) => warnings.push(line) });
      try {
        expect(await source.get(entries[0]!.key, b)).toBeUndefined();
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(victim!.descriptor.digest);
        expect(warnings[0]).toMatch(/not used, step runs/);
        expect(await b.has(victim!.descriptor.digest)).toBe(false);
        expect(await source.get(entries[1]!.key, b)).toEqual(entries[1]);
      } finally {
        await source.close();
      }
    });

    it('an image under the cache tag is not read as a cache, and an export refuses to overwrite it', async () => {
      const place = transport.place('image');
      const { a } = stores('image');
      const image = await place.putImage();
      const warnings: string[] = [];
      const source = await openImportedCache(place.from, { onWarning: (line) => warnings.push(line) });
      expect(source.size).toBe(0);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        /holds a application\/vnd\.oci\.image\.manifest\.v1\+json, not a stratum cache; not used/,
      );
      await source.close();
      await expect(exportTo(place.to(), [entry('x', null)], a)).rejects.toMatchObject({
        code: 'USAGE',
        message: expect.stringMatching(/not a stratum cache; refusing to overwrite it/),
      });
      const still = await cacheTransport(parseCacheSpec(place.from, 'from'), client, 'from').readManifest();
      expect(digestOf(still!.bytes)).toBe(image);
    });

    it('an entry whose layer is neither in the local blob store nor in the cache is not exported, with a warning', async () => {
      const place = transport.place('missing-layer');
      const { a } = stores('missing-layer');
      const elsewhere = new BlobStore(join(root, 'stores', transport.kind, 'missing-layer', 'elsewhere'));
      const gone = await makeLayer(elsewhere, content('missing-layer', 1));
      const kept = await makeLayer(a, content('missing-layer', 2));
      const warnings: string[] = [];
      const result = await exportTo(place.to(), [entry('gone', gone), entry('kept', kept)], a, {
        onWarning: (line) => warnings.push(line),
      });
      expect(result).toMatchObject({ layers: 2, entries: 1 });
      expect(warnings).toEqual([
        expect.stringMatching(/1 layer\(s\) are neither in the local blob store nor in the cache/),
      ]);
      expect(await keysOf(place.from)).toEqual([entry('kept', kept).key]);
    });

    it('cache mounts: an older one is carried over without being sent again; one that does not fit mounts-max-size is left out, with a warning', async () => {
      const place = transport.place('mounts');
      const { a } = stores('mounts');
      const [first, second, big] = await Promise.all([
        makeLayer(a, content('mounts', 1)),
        makeLayer(a, content('mounts', 2)),
        // Random bytes do not compress: this one is far larger than the other two together.
        makeLayer(a, randomBytes(4000).toString('base64') + content('mounts', 3)),
      ]);
      const bothFit = first.descriptor.size + second.descriptor.size;
      const exportMount = async (snapshot: MountSnapshot, max: number, warnings: string[] = []) => {
        const exporter = exporterFor(place.to(`,mounts=true,mounts-max-size=${max}`));
        exporter.addMount(snapshot);
        return exporter.flush(a, { onWarning: (line) => warnings.push(line) });
      };
      expect(await exportMount(mount('first', first), bothFit)).toMatchObject({
        mounts: 1,
        mountBlobsSent: 1,
      });
      expect(await exportMount(mount('second', second), bothFit)).toMatchObject({
        mounts: 2,
        mountBlobsSent: 1,
      });
      const warnings: string[] = [];
      expect(await exportMount(mount('big', big), bothFit, warnings)).toMatchObject({
        mounts: 2,
        mountBlobsSent: 0,
      });
      expect(warnings).toEqual([
        expect.stringMatching(/cache mount id=big .* does not fit in mounts-max-size=/),
      ]);
      const source = await openImportedCache(place.from);
      expect([source.hasMount(mount('first', first)), source.hasMount(mount('second', second))]).toEqual([
        true,
        true,
      ]);
      expect(source.hasMount(mount('big', big))).toBe(false);
      await source.close();
    });

    it(`an older entry whose blob the cache lost: the export drops ${transport.lostBlobDrops}`, async () => {
      const place = transport.place('lost');
      const { a } = stores('lost');
      const [lost, kept, fresh] = await Promise.all([1, 2, 3].map((n) => makeLayer(a, content('lost', n))));
      await exportTo(place.to(), [entry('lost', lost!), entry('kept', kept!)], a);
      await place.lose(lost!.descriptor.digest);
      const warnings: string[] = [];
      const result = await exportTo(place.to(), [entry('fresh', fresh!)], a, {
        onWarning: (line) => warnings.push(line),
      });
      if (transport.lostBlobDrops === 'that entry') {
        expect(result.entries).toBe(2);
        expect(await keysOf(place.from)).toEqual([entry('fresh', fresh!).key, entry('kept', kept!).key]);
        expect(warnings).toEqual([]);
      } else {
        expect(result.entries).toBe(1);
        expect(await keysOf(place.from)).toEqual([entry('fresh', fresh!).key]);
        expect(warnings).toEqual([expect.stringMatching(/older entries name layers the registry lost/)]);
      }
    });
  });
}
