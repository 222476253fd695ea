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

  it('runs RUN steps in the base and records a layer per RUN, an empty one when it changed nothing (BuildKit)', async () => {
    const ctx = box.context('run', {
      Dockerfile: `FROM ${box.baseRef}\nRUN echo hi > /hello && rm /bin/ls\nRUN true\nENV A=1\nCMD ["sh"]\n`,
    });
    const result = await box.build(ctx, { outputs: [`oci:${box.dir}/out1:latest`] });
    const image = await box.open(`oci:${box.dir}/out1:latest`);
    const history = image.config.value.history ?? [];
    expect(history.map((entry) => entry.empty_layer === true)).toEqual([false, false, false, true, true]);
    expect(image.manifest.value.layers).toHaveLength(3);
    // `RUN true`: the empty tar (1,024 zero bytes), the DiffID every BuildKit image shows for it.
    expect(image.config.value.rootfs.diff_ids[2]).toBe(
      'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef',
    );
    expect(image.config.value.config?.Env).toContain('A=1');
    expect(result.digest).toBe(image.descriptor.digest);
    // The layout shares the cache's blob files (hard links) rather than copying them.
    const layer = image.manifest.value.layers[1]!;
    expect(statSync(join(box.dir, 'out1/blobs/sha256', layer.digest.slice(7))).nlink).toBeGreaterThanOrEqual(
      2,
    );
  });

  it('independent stages run side by side; the stage that needs both waits for them', async () => {
    const ctx = box.context('parallel', {
      Dockerfile: [
        `FROM ${box.baseRef} AS left`,
        'RUN sleep 1 && echo left > /left',
        `FROM ${box.baseRef} AS right`,
        'RUN sleep 1 && echo right > /right',
        `FROM ${box.baseRef}`,
        'COPY --from=left /left /left',
        'COPY --from=right /right /right',
        '',
      ].join('\n'),
    });
    const result = await box.build(ctx, { noCache: true, outputs: [`oci:${box.dir}/parallel:x`] });
    const order = result.events
      .filter((event) => event.kind === 'step-start' || event.kind === 'step-end')
      .map(
        (event) => `${event.kind === 'step-start' ? 'start' : 'end'} ${event.step.stage}/${event.step.index}`,
      );
    // Both RUNs start before either ends; the last stage's steps come after both.
    expect(order.indexOf('start right/1')).toBeLessThan(order.indexOf('end left/1'));
    expect(order.indexOf('start left/1')).toBeLessThan(order.indexOf('end right/1'));
    expect(order.indexOf('start 2/1')).toBeGreaterThan(
      Math.max(order.indexOf('end left/1'), order.indexOf('end right/1')),
    );
  });

  it('a failing stage stops the stage running beside it, and its own error is the one reported', async () => {
    const ctx = box.context('parallel-fail', {
      Dockerfile: [
        `FROM ${box.baseRef} AS slow`,
        'RUN sleep 30',
        `FROM ${box.baseRef} AS broken`,
        'RUN echo failing && exit 9',
        `FROM ${box.baseRef}`,
        'COPY --from=slow /etc/passwd /a',
        'COPY --from=broken /etc/passwd /b',
        '',
      ].join('\n'),
    });
    const started = Date.now();
    await expect(box.build(ctx, { noCache: true })).rejects.toThrow(/exit code 9/);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
