import { describe, expect, it } from 'vitest';
import { diffImages, type ImageDiff, type StepDifference } from '../../src/analyze/index.js';
import type { ContainerConfig } from '../../src/oci/types.js';
import { BASE, buildImage, type Member, type Step } from './images.js';

async function diffOf(
  a: readonly Step[],
  b: readonly Step[],
  options: { times?: boolean; configA?: ContainerConfig; configB?: ContainerConfig } = {},
): Promise<ImageDiff> {
  const left = await buildImage(a, { name: 'A', ...(options.configA ? { config: options.configA } : {}) });
  const right = await buildImage(b, { name: 'B', ...(options.configB ? { config: options.configB } : {}) });
  return diffImages(left.source, right.source, options.times === undefined ? {} : { times: options.times });
}

/** Two images with the same base whose second step writes `a` or `b`. */
function pair(a: readonly Member[], b: readonly Member[]): [Step[], Step[]] {
  return [
    [BASE, { createdBy: 'RUN step', members: a }],
    [BASE, { createdBy: 'RUN step', members: b }],
  ];
}

function only(diff: ImageDiff, step: number): StepDifference[] {
  return [...(diff.steps[step]?.differences ?? [])];
}

describe('diffImages: each kind of difference', () => {
  it('an image and itself are equivalent', async () => {
    const steps: Step[] = [
      BASE,
      { createdBy: 'ENV A=1' },
      {
        createdBy: 'RUN x',
        members: [
          { name: 'x', content: 'x' },
          { name: 'y', type: 'link', linkname: 'x' },
          { name: 'dev/zero', type: 'character-device', devmajor: 1, devminor: 5 },
        ],
      },
    ];
    const image = await buildImage(steps);
    const diff = await diffImages(image.source, image.source);
    expect(diff.equivalent).toBe(true);
    expect(diff.steps.map((step) => step.differences.length)).toEqual([0, 0, 0]);
    expect(diff.final).toEqual([]);
    expect(diff.config).toEqual([]);
  });

  it('type', async () => {
    const diff = await diffOf(...pair([{ name: 'p', content: '' }], [{ name: 'p', type: 'directory' }]));
    expect(diff.equivalent).toBe(false);
    expect(only(diff, 1)).toEqual([
      expect.objectContaining({
        kind: 'differs',
        path: 'p',
        fields: ['type', 'mode'],
        a: { type: 'file', mode: '0644' },
        b: { type: 'dir', mode: '0755' },
      }),
    ]);
    expect(only(diff, 0)).toEqual([]);
  });

  it('mode (setuid included)', async () => {
    const diff = await diffOf(...pair([{ name: 'p', mode: 0o755 }], [{ name: 'p', mode: 0o4755 }]));
    expect(only(diff, 1)).toEqual([
      { kind: 'differs', path: 'p', fields: ['mode'], a: { mode: '0755' }, b: { mode: '04755' } },
    ]);
  });

  it('owner', async () => {
    const diff = await diffOf(...pair([{ name: 'p', uid: 0, gid: 0 }], [{ name: 'p', uid: 1000, gid: 50 }]));
    expect(only(diff, 1)).toEqual([
      {
        kind: 'differs',
        path: 'p',
        fields: ['uid', 'gid'],
        a: { uid: 0, gid: 0 },
        b: { uid: 1000, gid: 50 },
      },
    ]);
  });

  it('content, with the same size', async () => {
    const diff = await diffOf(...pair([{ name: 'p', content: 'abc' }], [{ name: 'p', content: 'abd' }]));
    const [difference] = only(diff, 1);
    expect(difference).toMatchObject({ kind: 'differs', path: 'p', fields: ['content'] });
  });

  it('link target', async () => {
    const diff = await diffOf(
      ...pair(
        [{ name: 'l', type: 'symlink', linkname: '/bin/sh' }],
        [{ name: 'l', type: 'symlink', linkname: 'sh' }],
      ),
    );
    expect(only(diff, 1)).toEqual([
      {
        kind: 'differs',
        path: 'l',
        fields: ['linkTarget'],
        a: { linkTarget: '/bin/sh' },
        b: { linkTarget: 'sh' },
      },
    ]);
  });

  it('device numbers', async () => {
    const diff = await diffOf(
      ...pair(
        [{ name: 'dev/x', type: 'character-device', devmajor: 1, devminor: 3 }],
        [{ name: 'dev/x', type: 'character-device', devmajor: 1, devminor: 5 }],
      ),
    );
    expect(only(diff, 1)).toEqual([
      { kind: 'differs', path: 'dev/x', fields: ['device'], a: { device: '1,3' }, b: { device: '1,5' } },
    ]);
  });

  it('hard-link groups', async () => {
    const diff = await diffOf(
      ...pair(
        [
          { name: 'a', content: 'same' },
          { name: 'b', type: 'link', linkname: 'a' },
        ],
        [
          { name: 'a', content: 'same' },
          { name: 'b', content: 'same' },
        ],
      ),
    );
    expect(only(diff, 1)).toEqual([
      { kind: 'differs', path: 'a', fields: ['links'], a: { links: ['a', 'b'] }, b: { links: [] } },
      { kind: 'differs', path: 'b', fields: ['links'], a: { links: ['a', 'b'] }, b: { links: [] } },
    ]);
  });

  it('a path only on one side', async () => {
    const diff = await diffOf(
      ...pair(
        [{ name: 'x', content: '1' }],
        [
          { name: 'x', content: '1' },
          { name: 'y', content: '2' },
        ],
      ),
    );
    expect(only(diff, 1)).toEqual([expect.objectContaining({ kind: 'only', side: 'b', path: 'y' })]);
  });

  it('a layer on one side only, told apart from a path that differs', async () => {
    const a: Step[] = [
      BASE,
      { createdBy: 'WORKDIR /', members: [] },
      { createdBy: 'RUN x', members: [{ name: 'x', content: 'x' }] },
    ];
    const b: Step[] = [
      BASE,
      { createdBy: 'WORKDIR /' },
      { createdBy: 'RUN x', members: [{ name: 'x', content: 'x' }] },
    ];
    const diff = await diffOf(a, b);
    expect(diff.equivalent).toBe(false);
    expect(only(diff, 1)).toEqual([expect.objectContaining({ kind: 'layer', side: 'a', entries: 0 })]);
    expect(only(diff, 2)).toEqual([]);
    expect(diff.final).toEqual([]);
    expect(diff.filesystemsEquivalent).toBe(true);
  });

  it('an entry re-emitted unchanged on one side only', async () => {
    const a: Step[] = [
      BASE,
      {
        createdBy: 'RUN touch',
        members: [
          { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' },
          { name: 'n', content: 'n' },
        ],
      },
    ];
    const b: Step[] = [BASE, { createdBy: 'RUN touch', members: [{ name: 'n', content: 'n' }] }];
    const diff = await diffOf(a, b);
    expect(only(diff, 1)).toEqual([{ kind: 'reemitted', side: 'a', path: 'etc/passwd', size: 26 }]);
    expect(diff.final).toEqual([]);
    expect(diff.equivalent).toBe(false);
    // The filesystems are the same: only a layer-exact comparison calls them different.
    expect(diff.filesystemsEquivalent).toBe(true);
  });

  it('times are ignored unless asked for', async () => {
    const [a, b] = pair(
      [{ name: 'p', content: 'same', mtime: 1 }],
      [{ name: 'p', content: 'same', mtime: 2 }],
    );
    expect((await diffOf(a, b)).equivalent).toBe(true);
    const timed = await diffOf(a, b, { times: true });
    expect(timed.equivalent).toBe(false);
    expect(only(timed, 1)).toEqual([
      { kind: 'differs', path: 'p', fields: ['mtime'], a: { mtime: 1 }, b: { mtime: 2 } },
    ]);
  });

  it('a difference is reported at the step that made it, and as resolved where it goes away', async () => {
    const a: Step[] = [
      BASE,
      { createdBy: 'RUN a', members: [{ name: 'x', content: '1' }] },
      { createdBy: 'RUN b', members: [{ name: 'y', content: '2' }] },
    ];
    const b: Step[] = [
      BASE,
      { createdBy: 'RUN a', members: [{ name: 'y', content: '2' }] },
      { createdBy: 'RUN b', members: [{ name: 'x', content: '1' }] },
    ];
    const diff = await diffOf(a, b);
    expect(only(diff, 1).map((item) => [item.kind, 'path' in item ? item.path : ''])).toEqual([
      ['only', 'x'],
      ['only', 'y'],
    ]);
    expect(only(diff, 2).map((item) => [item.kind, 'path' in item ? item.path : ''])).toEqual([
      ['resolved', 'x'],
      ['resolved', 'y'],
    ]);
    expect(diff.final).toEqual([]);
    expect(diff.equivalent).toBe(false);
  });

  it('histories of different lengths: said so, final filesystems still compared', async () => {
    const a: Step[] = [
      BASE,
      { createdBy: 'ENV A=1' },
      { createdBy: 'RUN x', members: [{ name: 'x', content: 'x' }] },
    ];
    const b: Step[] = [BASE, { createdBy: 'RUN x', members: [{ name: 'x', content: 'x' }] }];
    const diff = await diffOf(a, b);
    expect(diff.historyMismatch).toMatch(/3 steps in A, 2 in B/);
    expect(diff.steps).toHaveLength(3);
    expect(diff.steps[2]!.b).toBeUndefined();
    expect(diff.final).toEqual([]);
    expect(diff.equivalent).toBe(false);
  });

  it('config fields a Dockerfile sets', async () => {
    const configA: ContainerConfig = {
      Env: ['PATH=/bin', 'A=1'],
      Cmd: ['sh'],
      Entrypoint: null,
      WorkingDir: '/app',
      User: 'app',
      ExposedPorts: { '80/tcp': {} },
      Volumes: { '/data': {} },
      Labels: { a: '1', b: '2' },
      StopSignal: 'SIGTERM',
      Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9 },
      OnBuild: ['RUN x'],
      Shell: ['/bin/sh', '-c'],
    };
    const same = await diffOf([BASE], [BASE], {
      configA,
      configB: { ...configA, Labels: { b: '2', a: '1' }, Entrypoint: [] },
    });
    expect(same.config).toEqual([]);
    const configB: ContainerConfig = {
      Env: ['PATH=/bin', 'A=2'],
      Cmd: ['bash'],
      Entrypoint: ['/init'],
      WorkingDir: '/srv',
      User: 'root',
      ExposedPorts: { '443/tcp': {} },
      Volumes: {},
      Labels: { a: '1' },
      StopSignal: 'SIGKILL',
      Healthcheck: { Test: ['NONE'] },
      OnBuild: [],
      Shell: ['/bin/bash', '-c'],
    };
    const diff = await diffOf([BASE], [BASE], { configA, configB });
    expect(diff.config.map((item) => item.field)).toEqual([
      'Env',
      'Cmd',
      'Entrypoint',
      'WorkingDir',
      'User',
      'ExposedPorts',
      'Volumes',
      'Labels',
      'StopSignal',
      'Healthcheck',
      'OnBuild',
      'Shell',
    ]);
    expect(diff.config.find((item) => item.field === 'Volumes')).toEqual({
      field: 'Volumes',
      a: { '/data': {} },
    });
    expect(diff.equivalent).toBe(false);
  });
});
