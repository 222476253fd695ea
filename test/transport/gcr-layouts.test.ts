import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { openOciLayout, verifyOciLayout } from '../../src/transport/index.js';
import { corpusPath, requireCorpus } from '../helpers/corpora.js';
import { readAllBlobs } from '../oci/image-fixture.js';

/** go-containerregistry's pkg/v1/layout/testdata (see shared/corpora/go-containerregistry-layouts/README.md). */
const testdata = corpusPath('go-containerregistry-layouts', 'pkg', 'v1', 'layout', 'testdata');
const present = requireCorpus('go-containerregistry-layouts');

async function rejection(promise: Promise<unknown>): Promise<StratumError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StratumError) return error;
    throw error;
  }
  throw new Error('expected a StratumError');
}

describe.skipIf(!present)('go-containerregistry layouts read back with every blob verified', () => {
  it.each([
    ['test_index', 8],
    ['test_index_one_image', 3],
    ['test_index_media_type', 3],
    ['test_gc_index', 5],
  ])('%s: every blob index.json reaches (%i) matches its digest', async (layout, blobs) => {
    const result = await verifyOciLayout(join(testdata, layout));
    expect(result.blobs).toBe(blobs);
  });

  it('test_index: tags 1..4 open through a manifest, an unknown-typed descriptor, a nested OCI index and a Docker manifest list', async () => {
    const digests: string[] = [];
    for (const tag of ['1', '2', '3', '4']) {
      const source = await openOciLayout(join(testdata, 'test_index'), tag, {
        platform: { os: 'linux', architecture: 'amd64' },
      });
      const blobs = await readAllBlobs(source);
      expect(blobs.size).toBe(source.manifest.value.layers.length + 1);
      digests.push(source.manifest.digest);
    }
    expect(digests[0]).toBe('sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650');
    expect(digests[2]).toBe(digests[0]); // the nested index points at the same image
  });

  it('test_index_one_image: a layout with one untagged image opens without a tag', async () => {
    const source = await openOciLayout(join(testdata, 'test_index_one_image'), undefined);
    expect(source.manifest.digest).toBe(
      'sha256:98ceaf93e482fe91b9bfd6bba07137c098e49ee2d55e69f09fb6c951e75e0e46',
    );
    expect(source.config.value.rootfs.diff_ids).toHaveLength(1);
  });

  it('test_index: several images and no tag is a usage error listing the tags', async () => {
    const error = await rejection(openOciLayout(join(testdata, 'test_index'), undefined));
    expect(error.message).toMatch(/holds 4 images; name one with :TAG \(tags: 1, 2, 3, 4\)/);
  });

  it('test_index_media_type: a Helm artifact is refused as not a container image', async () => {
    const error = await rejection(openOciLayout(join(testdata, 'test_index_media_type'), undefined));
    expect(error.code).toBe('UNSUPPORTED');
    expect(error.message).toContain('application/vnd.cncf.helm.config.v1+json');
  });

  it('test_gc_image_unknown_mediatype: a layout with no blobs/ fails naming the missing digest', async () => {
    const error = await rejection(verifyOciLayout(join(testdata, 'test_gc_image_unknown_mediatype')));
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toMatch(/sha256:[a-f0-9]{64} is missing/);
  });
});
