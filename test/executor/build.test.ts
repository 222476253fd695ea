import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { isRoot } from '../helpers/system.js';

describe.skipIf(!isRoot)('stratum build (engine)', () => {
  let box: BuildSandbox;
  beforeAll(() => {
    box = buildSandbox();
  });
  afterAll(() => {
    box.cleanup();
  });

  it('runs RUN steps in the base and records one layer per changing step', async () => {
    const ctx = box.context('run', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo hi > /hello && rm /bin/ls\nRUN true\nENV A=1\nCMD ["sh"]\n`,
    });
    const result = await box.build(ctx, { outputs: [`oci:${box.dir}/out1:latest`] });
    const image = await box.open(`oci:${box.dir}/out1:latest`);
    const history = image.config.value.history ?? [];
    expect(history.map((entry) => entry.empty_layer === true)).toEqual([false, false, true, true, true]);
    expect(image.manifest.value.layers).toHaveLength(2);
    expect(image.config.value.config?.Env).toContain('A=1');
    expect(result.digest).toBe(image.descriptor.digest);
    // The layout shares the cache's blob files (hard links) rather than copying them.
    const layer = image.manifest.value.layers[1]!;
    expect(statSync(join(box.dir, 'out1/blobs/sha256', layer.digest.slice(7))).nlink).toBeGreaterThanOrEqual(
      2,
    );
  });
});
