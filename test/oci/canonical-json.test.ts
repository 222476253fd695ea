import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  configShape,
  manifestShape,
  serializeConfig,
  serializeManifest,
} from '../../src/oci/json.js';
import { parseConfig, parseManifest } from '../../src/oci/parse.js';
import { MediaType, type ImageConfig, type ImageManifest } from '../../src/oci/types.js';

const digest = `sha256:${'a'.repeat(64)}` as const;

describe('canonical JSON: Go encoding/json order for the image-spec structs', () => {
  it('writes manifest fields in struct order whatever the object order', () => {
    const scrambled = {
      layers: [{ size: 3, digest, mediaType: MediaType.ociLayerGzip }],
      annotations: { b: '2', a: '1' },
      config: { size: 2, mediaType: MediaType.ociConfig, digest },
      mediaType: MediaType.ociManifest,
      schemaVersion: 2,
    } as unknown as ImageManifest;
    expect(serializeManifest(scrambled).toString()).toBe(
      `{"schemaVersion":2,"mediaType":"${MediaType.ociManifest}","config":{"mediaType":"${MediaType.ociConfig}","digest":"${digest}","size":2},` +
        `"layers":[{"mediaType":"${MediaType.ociLayerGzip}","digest":"${digest}","size":3}],"annotations":{"a":"1","b":"2"}}`,
    );
  });

  it('sorts map keys as strings, integer-like keys included (V8 would put "9" before "10")', () => {
    const text = canonicalJson(
      { config: { Labels: { '9': 'x', '10': 'y', a: 'z' } } },
      configShape,
    ).toString();
    expect(text).toBe('{"config":{"Labels":{"10":"y","9":"x","a":"z"}}}');
  });

  it('escapes <, > and & as Go does, and ends without a newline', () => {
    const bytes = canonicalJson({ created_by: 'a && b > c <d>' });
    expect(bytes.toString()).toBe('{"created_by":"a \\u0026\\u0026 b \\u003e c \\u003cd\\u003e"}');
    expect(bytes.at(-1)).not.toBe(0x0a);
    expect(JSON.parse(bytes.toString())).toEqual({ created_by: 'a && b > c <d>' });
  });

  it('keeps fields it does not know, after the known ones, sorted', () => {
    const text = canonicalJson(
      { zeta: 1, os: 'linux', alpha: { b: 1, a: 2 }, architecture: 'amd64' },
      configShape,
    ).toString();
    expect(text).toBe('{"architecture":"amd64","os":"linux","alpha":{"a":2,"b":1},"zeta":1}');
  });

  it('omits undefined fields and keeps null ones (Cmd: null is meaningful)', () => {
    const text = canonicalJson({ config: { Cmd: null, Entrypoint: undefined } }, configShape).toString();
    expect(text).toBe('{"config":{"Cmd":null}}');
  });

  it('is a fixed point: parse then serialise gives the same bytes and digest', () => {
    const config: ImageConfig = {
      architecture: 'arm64',
      variant: 'v8',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: {
        Env: ['A=1'],
        ExposedPorts: { '80/tcp': {} },
        Healthcheck: { Test: ['CMD', 'true'], Interval: 1 },
        Shell: ['/bin/sh', '-c'],
      },
      rootfs: { type: 'layers', diff_ids: [digest] },
      history: [{ created_by: 'RUN x', empty_layer: false }],
    };
    const first = serializeConfig(config);
    const parsed = parseConfig(first, 'test');
    expect(serializeConfig(parsed.value).equals(first)).toBe(true);
    expect(Object.keys(JSON.parse(first.toString()) as object)).toEqual([
      'created',
      'architecture',
      'os',
      'variant',
      'config',
      'rootfs',
      'history',
    ]);
    const manifest = parseManifest(
      canonicalJson(
        { schemaVersion: 2, config: { mediaType: MediaType.ociConfig, digest, size: 1 }, layers: [] },
        manifestShape,
      ),
      'test',
    );
    expect(serializeManifest(manifest.value).equals(manifest.raw)).toBe(true);
  });
});
