import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildEvent } from '../../src/executor/progress.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';
import { layerBlobPaths } from '../helpers/layout.js';
import { isRoot } from '../helpers/system.js';

/**
 * SOURCE_DATE_EPOCH and the layer cache: the cache keeps layers as steps made them and the
 * epoch is applied to a copy, so a build with an epoch gives the same image whether its steps
 * ran or were taken from a cache filled without the epoch (or with another one).
 */
const EPOCH = 1_700_000_000;

function hits(events: readonly BuildEvent[]): boolean[] {
  return events
    .filter((event): event is Extract<BuildEvent, { kind: 'cache' }> => event.kind === 'cache')
    .map((event) => event.hit);
}

/** Every mtime in every layer above the base, as tar prints it in seconds. */
function layerTimes(layout: string): number[] {
  return layerBlobPaths(layout)
    .slice(1)
    .flatMap((blob) =>
      execFileSync('tar', ['--full-time', '--utc', '-tvzf', blob], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => {
          const [, , , date, time] = line.split(/\s+/);
          return Date.parse(`${date}T${time}Z`) / 1000;
        }),
    );
}

describe.skipIf(!isRoot)('SOURCE_DATE_EPOCH with a layer cache', () => {
  let box: BuildSandbox;
  let ctx: string;
  beforeAll(() => {
    box = buildSandbox();
    ctx = box.context('epoch', {
      Dockerfile: [
        `FROM ${box.baseRef}`,
        'COPY app.txt /app/app.txt',
        'RUN echo made > /made && rm /bin/ls',
        'WORKDIR /app',
        '',
      ].join('\n'),
      'app.txt': 'app\n',
    });
  });
  afterAll(() => {
    box.cleanup();
  });

  it('a cache filled without the epoch serves a build with it: the same image as running every step, times clamped', async () => {
    await box.build(ctx);
    const fromCache = await box.build(ctx, {
      sourceDateEpoch: EPOCH,
      outputs: [`oci:${join(box.dir, 'from-cache')}:x`],
    });
    expect(hits(fromCache.events)).toEqual([true, true, true]);
    const ran = await box.build(ctx, {
      sourceDateEpoch: EPOCH,
      noCache: true,
      outputs: [`oci:${join(box.dir, 'ran')}:x`],
    });
    expect(hits(ran.events)).toEqual([false, false, false]);
    expect(fromCache.digest).toBe(ran.digest);
    const times = layerTimes(join(box.dir, 'from-cache'));
    expect(times.length).toBeGreaterThan(3);
    for (const time of times) expect(time).toBeLessThanOrEqual(EPOCH);
  });

  it('another epoch clamps the cached layers again, without running a step; no epoch gives the times the steps made', async () => {
    const other = await box.build(ctx, { sourceDateEpoch: EPOCH - 86_400 });
    expect(hits(other.events)).toEqual([true, true, true]);
    const ranOther = await box.build(ctx, { sourceDateEpoch: EPOCH - 86_400, noCache: true });
    expect(other.digest).toBe(ranOther.digest);
    const plain = await box.build(ctx, { outputs: [`oci:${join(box.dir, 'plain')}:x`] });
    expect(hits(plain.events)).toEqual([true, true, true]);
    expect(Math.max(...layerTimes(join(box.dir, 'plain')))).toBeGreaterThan(EPOCH);
  });
});
