import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { copyImage, openImage, writeImage } from '../../src/transport/images.js';
import { main } from '../../src/cli/main.js';
import { makeImage, readAllBlobs, writeMultiPlatformLayout, type TestImage } from '../oci/image-fixture.js';

/**
 * Bad input: each case is one StratumError whose one-line message names the file and the digest
 * or tag, and a failed copy leaves nothing at its destination.
 */

const dir = mkdtempSync(join(tmpdir(), 'stratum-bad-input-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let image: TestImage;
beforeAll(async () => {
  image = await makeImage([{ files: { a: 'a'.repeat(3000) } }, { files: { b: 'b' }, compression: 'none' }]);
});

async function failure(promise: Promise<unknown>): Promise<StratumError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StratumError) {
      expect(error.message).not.toContain('\n');
      return error;
    }
    throw error;
  }
  throw new Error('expected a StratumError');
}

function blobFile(layout: string, digest: string): string {
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** Every destination kind, and a check that a failed write left nothing there. */
function destinations(name: string): { ref: string; untouched: () => void }[] {
  const existing = join(dir, `${name}-existing`);
  return [
    {
      ref: `oci:${join(dir, `${name}-new`)}:t`,
      untouched: () => {
        expect(existsSync(join(dir, `${name}-new`))).toBe(false);
      },
    },
    {
      ref: `oci:${existing}:t`,
      untouched: () => {
        expect(readFileSync(join(existing, 'index.json'), 'utf8')).toBe(existingIndex.get(existing));
      },
    },
    {
      ref: `oci-archive:${join(dir, `${name}.tar`)}`,
      untouched: () => {
        expect(existsSync(join(dir, `${name}.tar`))).toBe(false);
      },
    },
    {
      ref: `docker-archive:${join(dir, `${name}.docker.tar`)}:x:1`,
      untouched: () => {
        expect(existsSync(join(dir, `${name}.docker.tar`))).toBe(false);
      },
    },
  ];
}
const existingIndex = new Map<string, string>();

async function prepareExisting(name: string): Promise<void> {
  const existing = join(dir, `${name}-existing`);
  const other = await makeImage([{ files: { other: 'o' } }]);
  await writeImage(other.source, `oci:${existing}:keep`);
  existingIndex.set(existing, readFileSync(join(existing, 'index.json'), 'utf8'));
}

function noTemporaries(): void {
  expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
}

describe('bad input is one line naming the file and digest or tag; nothing half-written', () => {
  it('a path that does not exist', async () => {
    for (const ref of [
      `oci:${join(dir, 'nope')}`,
      `oci-archive:${join(dir, 'nope.tar')}`,
      `docker-archive:${join(dir, 'nope.tar')}`,
    ]) {
      const error = await failure(openImage(ref));
      expect(error.code).toBe('NOT_FOUND');
      expect(error.message).toContain(join(dir, 'nope'));
      expect(error.message).toMatch(/does not exist/);
    }
  });

  it('a tag that is not in the layout', async () => {
    await writeImage(image.source, `oci:${join(dir, 'tagged')}:present`);
    const error = await failure(openImage(`oci:${join(dir, 'tagged')}:absent`));
    expect(error.message).toBe(
      `oci:${join(dir, 'tagged')}:absent: tag "absent" not found in index.json (tags: present)`,
    );
    await writeImage(image.source, `docker-archive:${join(dir, 'tagged.tar')}:app:1`);
    const docker = await failure(openImage(`docker-archive:${join(dir, 'tagged.tar')}:app:2`));
    expect(docker.message).toContain('tag "app:2" not found in manifest.json (tags: app:1)');
  });

  it('an index without the requested platform names the index digest and the platforms it has', async () => {
    const arm = await makeImage([{ files: { x: 'arm' } }], {
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    const indexDigest = writeMultiPlatformLayout(join(dir, 'multi'), 'latest', [image, arm]);
    const error = await failure(
      openImage(`oci:${join(dir, 'multi')}:latest`, { platform: { os: 'linux', architecture: 's390x' } }),
    );
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toContain(
      `index ${indexDigest} has no image for linux/s390x (platforms: linux/amd64, linux/arm64/v8)`,
    );
  });

  it('a truncated archive, of either kind', async () => {
    for (const kind of ['oci-archive', 'docker-archive'] as const) {
      const file = join(dir, `truncated-${kind}.tar`);
      await writeImage(image.source, `${kind}:${file}`);
      truncateSync(file, statSync(file).size - 2000);
      const error = await failure(openImage(`${kind}:${file}`));
      expect(error.code).toBe('INVALID_IMAGE');
      expect(error.message).toMatch(new RegExp(`^${kind}:${file}: truncated archive: `));
      // Cut inside a blob: the member and the missing bytes are named.
      truncateSync(file, 4000);
      const inside = await failure(openImage(`${kind}:${file}`));
      expect(inside.message).toMatch(
        new RegExp(
          `^${kind}:${file}: truncated archive: member "[^"]+" needs \\d+ bytes at offset \\d+, the file has 4000$`,
        ),
      );
    }
  });

  it('a blob whose bytes do not match its digest fails the copy, naming file and digest', async () => {
    const layout = join(dir, 'corrupt');
    await writeImage(image.source, `oci:${layout}:t`);
    const layer = image.source.manifest.value.layers[0]!;
    const bytes = readFileSync(blobFile(layout, layer.digest));
    bytes[bytes.length - 5]! ^= 0xff;
    writeFileSync(blobFile(layout, layer.digest), bytes);
    await prepareExisting('corrupt');
    for (const { ref, untouched } of destinations('corrupt')) {
      const error = await failure(copyImage(`oci:${layout}:t`, ref));
      expect(error.code, ref).toBe('DIGEST_MISMATCH');
      expect(error.message, ref).toContain(blobFile(layout, layer.digest));
      expect(error.message, ref).toMatch(
        new RegExp(`content is sha256:[a-f0-9]{64}, expected ${layer.digest}`),
      );
      untouched();
    }
    noTemporaries();
  });

  it('a manifest naming a missing blob fails the copy, naming the digest', async () => {
    const layout = join(dir, 'missing');
    await writeImage(image.source, `oci:${layout}:t`);
    const layer = image.source.manifest.value.layers[1]!;
    unlinkSync(blobFile(layout, layer.digest));
    await prepareExisting('missing');
    for (const { ref, untouched } of destinations('missing')) {
      const error = await failure(copyImage(`oci:${layout}:t`, ref));
      expect(error.code, ref).toBe('NOT_FOUND');
      expect(error.message, ref).toBe(
        `oci:${layout}:t: blob ${layer.digest} is missing (${blobFile(layout, layer.digest)})`,
      );
      untouched();
    }
    noTemporaries();
  });

  it('a config whose bytes do not match is refused when the image is opened', async () => {
    const layout = join(dir, 'bad-config');
    await writeImage(image.source, `oci:${layout}:t`);
    const config = image.source.config;
    writeFileSync(
      blobFile(layout, config.digest),
      Buffer.from(config.raw.toString().replace('amd64', 'arm64')),
    );
    const error = await failure(openImage(`oci:${layout}:t`));
    expect(error.code).toBe('DIGEST_MISMATCH');
    expect(error.message).toContain(config.digest);
  });

  it('the CLI prints such an error as one line and exits 1', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const code = await main(['inspect', `oci:${join(dir, 'tagged')}:absent`]);
      expect(code).toBe(1);
      expect(stderr.mock.calls.map((call) => String(call[0])).join('')).toBe(
        `stratum: oci:${join(dir, 'tagged')}:absent: tag "absent" not found in index.json (tags: present)\n`,
      );
    } finally {
      stderr.mockRestore();
    }
  });

  it('an image that reads cleanly still verifies every blob it hands out', async () => {
    const back = await openImage(`oci:${join(dir, 'tagged')}:present`);
    expect((await readAllBlobs(back)).size).toBe(3);
  });
});
