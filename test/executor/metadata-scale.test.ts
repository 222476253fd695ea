import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StratumError } from '../../src/errors.js';
import { StageState } from '../../src/executor/stage-state.js';
import { scratchState } from '../../src/executor/image-state.js';
import { buildSandbox, type BuildSandbox } from '../helpers/build.js';

/**
 * Issue 26: a long run of metadata steps (32,000 ENV lines) took 98 s, cubic in its length, and a
 * SIGTERM waited for its end. Speed is measured in bench/metadata.js; here, what made it slow
 * must not change what the image gets, and an abort must reach the build between steps.
 */
describe('a long run of metadata steps', () => {
  let sandbox: BuildSandbox;
  beforeAll(() => {
    sandbox = buildSandbox();
  });
  afterAll(() => {
    sandbox.cleanup();
  });

  it('stops at the next step when the build is aborted from the event loop (as a signal handler is)', async () => {
    const total = 2000;
    const lines = Array.from({ length: total }, (_, i) => `ENV V${i}=${i}`);
    const context = sandbox.context('many-env', {
      Dockerfile: `FROM ${sandbox.baseRef}\n${lines.join('\n')}\n`,
    });
    const controller = new AbortController();
    const started: number[] = [];
    const build = sandbox.build(context, {
      signal: controller.signal,
      onEvent: (event) => {
        if (event.kind !== 'step-start') return;
        started.push(event.step.index);
        // A signal handler runs on a later turn of the event loop, never inside a step.
        if (event.step.index === 3)
          setImmediate(() => {
            controller.abort(new StratumError('ABORTED', 'stop'));
          });
      },
    });
    await expect(build).rejects.toMatchObject({ code: 'ABORTED' });
    expect(Math.max(...started)).toBeLessThan(10);
  });

  it('gives the same config and history as one step at a time', async () => {
    const context = sandbox.context('env-order', {
      Dockerfile: [
        `FROM ${sandbox.baseRef}`,
        'ENV A=1 B=2',
        'LABEL x=1 y=2',
        'ENV A=3 C=$A',
        'LABEL x=3',
        'EXPOSE 80 81/udp',
        'EXPOSE 80',
        'RUN true',
        'ENV B=4',
        'ONBUILD RUN a',
        'ONBUILD RUN b',
        '',
      ].join('\n'),
    });
    const { image } = await sandbox.build(context);
    const config = image.config.value.config!;
    // A name set again keeps its place; C saw A from before its line.
    expect(config.Env?.filter((entry) => !entry.startsWith('PATH='))).toEqual(['A=3', 'B=4', 'C=1']);
    expect(Object.entries(config.Labels ?? {})).toEqual([
      ['x', '3'],
      ['y', '2'],
    ]);
    expect(Object.keys(config.ExposedPorts ?? {}).sort()).toEqual(['80/tcp', '81/udp']);
    expect(config.OnBuild).toEqual(['RUN a', 'RUN b']);
  });

  it('never changes a state it has handed out', () => {
    const image = new StageState({
      ...scratchState({ os: 'linux', architecture: 'amd64' }),
      config: { Env: ['A=1'] },
    });
    image.apply({ configPatch: {}, env: [['B', '2']], entries: { Labels: { l: '1' } }, onBuild: 'RUN a' });
    image.addEmptyHistory('ENV B=2', undefined);
    const first = image.state;
    const copy = structuredClone(first);
    image.apply({
      configPatch: {},
      env: [
        ['A', '9'],
        ['C', '3'],
      ],
      entries: { Labels: { l: '2', m: '1' } },
      onBuild: 'RUN b',
    });
    image.addEmptyHistory('ENV A=9 C=3', undefined);
    expect(first).toEqual(copy);
    expect(image.state.config.Env).toEqual(['A=9', 'B=2', 'C=3']);
    expect(image.state.config.Labels).toEqual({ l: '2', m: '1' });
    expect(image.state.config.OnBuild).toEqual(['RUN a', 'RUN b']);
    expect(image.state.history.map((entry) => entry.created_by)).toEqual(['ENV B=2', 'ENV A=9 C=3']);
    expect(image.getEnv('A')).toBe('9');
  });
});
