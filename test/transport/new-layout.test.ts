import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/images/images.js';
import type { ImageSource } from '../../src/oci/image.js';
import { writeOciLayout } from '../../src/transport/layout/writer.js';
import { makeImage } from '../oci/image-fixture.js';

/**
 * A layout where no directory was is staged beside it and renamed into place whole. Before, a
 * failed first write removed the directory it had made with everything in it: a second writer's
 * finished image in the same new directory went with it.
 */

const dir = mkdtempSync(join(tmpdir(), 'stratum-new-layout-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The source, with its blobs held back until `release` is called; then they fail, or not. */
function heldBack(source: ImageSource): { source: ImageSource; release: (fail: boolean) => void } {
  let release: (fail: boolean) => void = () => undefined;
  const gate = new Promise<boolean>((resolve) => {
    release = resolve;
  });
  return {
    source: {
      ...source,
      openBlob: async (descriptor, signal): Promise<Readable> => {
        if (await gate) throw new Error('the source went away');
        return source.openBlob(descriptor, signal);
      },
    },
    release: (fail) => {
      release(fail);
    },
  };
}

async function tagsIn(layout: string): Promise<string[]> {
  const tags: string[] = [];
  for (const tag of ['first', 'second']) {
    const image = await openImage(`oci:${layout}:${tag}`).catch(() => undefined);
    if (image === undefined) continue;
    tags.push(tag);
    await image.close();
  }
  return tags;
}

describe('writing a layout where none is', () => {
  it('a write that fails after another writer finished the same new directory leaves that image whole', async () => {
    const layout = join(dir, 'shared-fails');
    const first = heldBack((await makeImage([{ files: { a: 'first' } }])).source);
    const writing = writeOciLayout(first.source, layout, ['first']);
    writing.catch(() => undefined);
    // The first write is under way (staged beside the directory, which is not there yet)...
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(layout)).toBe(false);
    // ...when a second writer makes the directory and finishes.
    await writeOciLayout((await makeImage([{ files: { b: 'second' } }])).source, layout, ['second']);
    first.release(true);
    await expect(writing).rejects.toThrow('the source went away');
    expect(await tagsIn(layout)).toEqual(['second']);
    expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });

  it('a write that succeeds after another writer made the directory adds its image to that layout', async () => {
    const layout = join(dir, 'shared-both');
    const first = heldBack((await makeImage([{ files: { a: 'first' } }])).source);
    const writing = writeOciLayout(first.source, layout, ['first']);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await writeOciLayout((await makeImage([{ files: { b: 'second' } }])).source, layout, ['second']);
    first.release(false);
    await writing;
    expect(await tagsIn(layout)).toEqual(['first', 'second']);
    expect(readdirSync(dir).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });

  it('a failed write into a directory that is not there leaves neither it nor the parents it made', async () => {
    const layout = join(dir, 'made', 'for', 'it');
    const failing = heldBack((await makeImage([{ files: { a: 'x' } }])).source);
    failing.release(true);
    await expect(writeOciLayout(failing.source, layout, ['first'])).rejects.toThrow('the source went away');
    expect(existsSync(join(dir, 'made'))).toBe(false);
  });
});
