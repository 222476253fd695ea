import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildEvent } from '../../src/executor/progress.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { layerBlobPaths, layerListings } from '../helpers/layout.js';
import { isRoot } from '../helpers/system.js';

/**
 * COPY --link as BuildKit has it (a MergeOp): the copy is made on an empty directory, stacked as
 * a layer of its own, and keyed without its parent, so a changed base reuses it.
 */

function hits(events: readonly BuildEvent[]): string[] {
  return events
    .filter((event): event is Extract<BuildEvent, { kind: 'cache' }> => event.kind === 'cache')
    .map((event) => (event.hit ? 'HIT' : 'MISS'));
}

/** The files of a layout's image, as `tar` lists its layers applied in order (names only). */
function layerDigests(layout: string): string[] {
  return layerBlobPaths(layout).map((path) => path.slice(path.lastIndexOf('/') + 1));
}

describe.skipIf(!isRoot)('COPY --link', () => {
  let box: BuildSandbox;
  beforeAll(() => {
    box = buildSandbox();
  });
  afterAll(() => {
    box.cleanup();
  });

  it('is reused across a base change: a cache hit with the same layer digest, while the steps after it miss', async () => {
    const ctx = box.context('link-reuse', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'ARG V',
        'RUN echo "$V" > /base-version',
        'COPY --link app/ /srv/app/',
        'RUN cat /base-version /srv/app/main.txt > /combined',
        '',
      ].join('\n'),
      'app/main.txt': 'main\n',
    });
    const first = join(box.dir, 'link-1');
    const second = join(box.dir, 'link-2');
    const one = await box.build(ctx, { buildArgs: { V: '1' }, outputs: [`oci:${first}:x`] });
    expect(hits(one.events)).toEqual(['MISS', 'MISS', 'MISS']);
    const two = await box.build(ctx, { buildArgs: { V: '2' }, outputs: [`oci:${second}:x`] });
    // The base (the RUN below) changed: the linked COPY still hits; the RUN above it reads the
    // new base and misses.
    expect(hits(two.events)).toEqual(['MISS', 'HIT', 'MISS']);
    const [base1, run1, link1, top1] = layerDigests(first);
    const [base2, run2, link2, top2] = layerDigests(second);
    expect(base2).toBe(base1);
    expect(run2).not.toBe(run1);
    expect(link2).toBe(link1);
    expect(top2).not.toBe(top1);
    // The linked layer holds only what was copied and its parents, made apart from the image.
    expect(layerListings(first)[2]).toEqual([
      'drwxr-xr-x 0/0 0 srv/',
      'drwxr-xr-x 0/0 0 srv/app/',
      '-rw-r--r-- 0/0 5 srv/app/main.txt',
    ]);
    const combined = execFileSync('tar', ['-xzOf', layerBlobPaths(second)[3]!, 'combined'], {
      encoding: 'utf8',
    });
    expect(combined).toBe('2\nmain\n');
  });

  it('does not follow a symlink of the image: the linked directory replaces it', async () => {
    const ctx = box.context('link-symlink', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'RUN ln -s /etc /app',
        'COPY --link f.txt /app/f.txt',
        'RUN test -d /app && test ! -L /app && test ! -e /etc/f.txt && cat /app/f.txt > /seen',
        '',
      ].join('\n'),
      'f.txt': 'f\n',
    });
    const out = join(box.dir, 'link-symlink');
    await box.build(ctx, { outputs: [`oci:${out}:x`] });
    expect(layerListings(out)[2]).toEqual(['drwxr-xr-x 0/0 0 app/', '-rw-r--r-- 0/0 2 app/f.txt']);
  });

  it('--chown with numbers works; a name is refused naming the line, as there is no /etc/passwd below the layer', async () => {
    const numeric = box.context('link-chown', {
      Dockerfile: `FROM ${box.baseRef}\nCOPY --link --chown=1000:50 f.txt /owned/\n`,
      'f.txt': 'f\n',
    });
    const out = join(box.dir, 'link-chown');
    await box.build(numeric, { outputs: [`oci:${out}:x`] });
    expect(layerListings(out)[1]).toContain('-rw-r--r-- 1000/50 2 owned/f.txt');
    const named = box.context('link-chown-name', {
      Dockerfile: `FROM ${box.baseRef}\n\nCOPY --link --chown=app f.txt /owned/\n`,
      'f.txt': 'f\n',
    });
    await expect(box.build(named)).rejects.toMatchObject({
      code: 'BUILD_FAILED',
      message: expect.stringMatching(/Dockerfile:3.*--link --chown=app: .*use numeric ids/),
    });
  });

  it('with --chmod is a plain COPY, as in BuildKit (keyed on its parent)', async () => {
    const ctx = box.context('link-chmod', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'ARG V',
        'RUN echo "$V" > /v',
        'COPY --link --chmod=600 f.txt /f.txt',
        '',
      ].join('\n'),
      'f.txt': 'f\n',
    });
    await box.build(ctx, { buildArgs: { V: '1' } });
    const again = await box.build(ctx, { buildArgs: { V: '2' } });
    expect(hits(again.events)).toEqual(['MISS', 'MISS']);
  });
});
