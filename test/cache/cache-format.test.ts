import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { boundMounts, type StoredMount } from '../../src/cache/mount-export.js';
import {
  cacheManifest,
  decodeCacheConfig,
  encodeCacheConfig,
  mergeEntries,
  type StoredCacheEntry,
} from '../../src/cache/remote/format.js';
import { MAX_RECORDED_FILES, closestRecord, type StepRecord } from '../../src/cache/step-record.js';
import type { Digest } from '../../src/oci/types.js';

function digest(text: string): Digest {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

function record(step: string, parent: string, extra: Partial<StepRecord> = {}): StepRecord {
  return {
    dockerfile: 'Dockerfile',
    target: '',
    step,
    key: digest(`${step}-${parent}`),
    components: [
      { name: 'previous step', value: parent },
      { name: 'instruction', value: `RUN ${step}` },
    ],
    ...extra,
  };
}

function entry(name: string, used: string, withRecord?: StepRecord): StoredCacheEntry {
  return {
    key: withRecord?.key ?? digest(name),
    layer: null,
    createdBy: name,
    instruction: name,
    created: '2024-01-01T00:00:00.000Z',
    used,
    ...(withRecord === undefined ? {} : { record: withRecord }),
  };
}

function mount(id: string, size: number, used: string): StoredMount {
  return {
    id,
    uid: 0,
    gid: 0,
    mode: 0o755,
    layer: {
      descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest(id), size },
      diffId: digest(`${id}-diff`),
    },
    size: size * 3,
    used,
  };
}

describe('the cache config with step records and cache mounts', () => {
  it('round-trips entries with their records and the mounts; the manifest lists the mount blobs', () => {
    const withFiles = record('0/1', digest('base'), {
      files: {
        'src/a.js': {
          type: 'file',
          destRelPath: 'a.js',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: 3,
          contentDigest: digest('a'),
        },
      },
      base: { reference: 'docker.io/library/debian:12', digest: digest('debian') },
    });
    const entries = [
      entry('one', '2024-01-02T00:00:00.000Z', withFiles),
      entry('two', '2024-01-02T00:00:00.000Z'),
    ];
    const mounts = [mount('apt', 100, '2024-01-02T00:00:00.000Z')];
    const decoded = decodeCacheConfig(encodeCacheConfig(entries, mounts), 'test');
    expect(decoded.entries).toEqual(entries);
    expect(decoded.mounts).toEqual(mounts);
    const manifest = JSON.parse(
      cacheManifest({ mediaType: 'x', digest: digest('c'), size: 1 }, entries, 'now', mounts).toString(),
    ) as { layers: { digest: string }[] };
    expect(manifest.layers.map((layer) => layer.digest)).toEqual([digest('apt')]);
  });

  it('a config without records or mounts (an older stratum) reads as before; a malformed record costs only itself', () => {
    const plain = Buffer.from(
      JSON.stringify({
        version: 1,
        entries: [{ ...entry('old', 'u'), record: { step: 7 } }, { ...entry('older', 'u') }],
        mounts: [{ id: 'broken' }],
      }),
    );
    const decoded = decodeCacheConfig(plain, 'test');
    expect(decoded.entries.map((item) => [item.createdBy, item.record])).toEqual([
      ['old', undefined],
      ['older', undefined],
    ]);
    expect(decoded.mounts).toEqual([]);
  });

  it('a step that read more than MAX_RECORDED_FILES files travels without its file list', () => {
    const files = Object.fromEntries(
      Array.from({ length: MAX_RECORDED_FILES + 1 }, (_, n) => [
        `f${n}`,
        { type: 'file', destRelPath: `f${n}`, mode: 0o644, uid: 0, gid: 0, size: 1 },
      ]),
    );
    const big = record('0/1', digest('base'), { files });
    const [decoded] = decodeCacheConfig(encodeCacheConfig([entry('big', 'u', big)]), 'test').entries;
    expect(decoded!.record!.files).toBeUndefined();
    expect(decoded!.record!.components).toEqual(big.components);
  });

  it('a hit exported without its record keeps the one an earlier export gave it', () => {
    const known = record('0/1', digest('base'));
    const fresh = { ...entry('x', 'new', known) };
    delete (fresh as { record?: StepRecord }).record;
    const [merged] = mergeEntries([fresh], [entry('x', 'old', known)], 10);
    expect(merged!.record).toEqual(known);
    expect(merged!.used).toBe('new');
  });
});

describe('closestRecord', () => {
  const parent = digest('parent');
  it('prefers the sibling (same parent), then the same step, and never another Dockerfile', () => {
    const query = record('0/3', parent);
    const sibling = { record: record('0/9', parent), used: '1' };
    const samePlace = { record: record('0/3', digest('elsewhere')), used: '2' };
    const otherFile = { record: { ...record('0/3', parent), dockerfile: 'other.Dockerfile' }, used: '3' };
    expect(closestRecord([samePlace, sibling, otherFile], query)).toBe(sibling);
    expect(closestRecord([samePlace, otherFile], query)).toBe(samePlace);
    expect(closestRecord([otherFile], query)).toBeUndefined();
  });

  it('between equals, the most recently exported', () => {
    const query = record('0/3', parent);
    const older = { record: record('0/3', digest('a')), used: '2024-01-01' };
    const newer = { record: record('0/3', digest('b')), used: '2024-02-01' };
    expect(closestRecord([older, newer], query)).toBe(newer);
  });
});

describe('boundMounts', () => {
  it("keeps this build's mounts first, then the newest older ones, within the bound", () => {
    const fresh = [mount('apt', 60, '2024-03-01')];
    const older = [
      mount('npm', 30, '2024-01-01'),
      mount('pip', 30, '2024-02-01'),
      mount('apt', 10, '2024-01-01'),
    ];
    const { kept, left } = boundMounts(fresh, older, 100);
    expect(kept.map((item) => item.id)).toEqual(['apt', 'pip']);
    expect(left.map((item) => item.id)).toEqual(['npm']);
    expect(kept[0]!.layer.descriptor.size).toBe(60);
  });
});
