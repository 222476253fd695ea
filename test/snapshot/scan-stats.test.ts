import { lstatSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SharedStats } from '../../src/snapshot/scan-stats.js';
import { removeAll, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  await removeAll(...dirs.splice(0));
});

describe('SharedStats: lstat calls shared with a worker', () => {
  it('gives each entry’s fields in order, and nothing for what cannot be statted, job after job', async () => {
    const root = await tempDir();
    dirs.push(root);
    await Promise.all(
      Array.from({ length: 2500 }, (_, f) => writeFile(join(root, `f${f}`), 'y'.repeat(f % 70))),
    );
    for (let job = 0; job < 3; job++) {
      // Every 7th path missing, every 11th through a file (ENOTDIR): the caller stats those.
      const paths = Array.from({ length: 2500 }, (_, f) =>
        f % 7 === 3
          ? join(root, `missing${f}`)
          : f % 11 === 5
            ? join(root, `f${f}`, 'below')
            : join(root, `f${f}`),
      );
      const stats = new SharedStats(paths);
      try {
        paths.forEach((path, index) => {
          const raw = stats.take(index);
          if (index % 7 === 3 || index % 11 === 5) {
            expect(raw, path).toBeUndefined();
            return;
          }
          const expected = lstatSync(path, { bigint: true });
          expect(raw, path).toEqual({
            mode: Number(expected.mode),
            uid: Number(expected.uid),
            gid: Number(expected.gid),
            size: Number(expected.size),
            nlink: Number(expected.nlink),
            mtimeNs: expected.mtimeNs,
            ctimeNs: expected.ctimeNs,
            ino: expected.ino,
            dev: expected.dev,
            rdev: expected.rdev,
          });
        });
      } finally {
        stats.stop();
      }
    }
  });
});
