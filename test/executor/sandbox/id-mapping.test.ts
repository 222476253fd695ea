import { describe, expect, it } from 'vitest';
import { StratumError } from '../../../src/errors.js';
import {
  canSetGroups,
  checkOwnerMapped,
  checkSpecIds,
  gidMapped,
  type IdMapping,
} from '../../../src/executor/sandbox/id-mapping.js';
import type { SandboxSpec } from '../../../src/executor/sandbox/types.js';

/**
 * A rootless stratum runs itself in the namespace a step used to make for itself
 * (src/user-namespace.ts): inside, the mapping is read back from /proc/self/uid_map as a
 * `namespace` mapping. Its refusals must read as the step's own layout's did.
 */
const spec = (uid: number, gid: number, additionalGids: readonly number[] = []): SandboxSpec =>
  ({ uid, gid, additionalGids }) as unknown as SandboxSpec;

const refusal = (check: () => void): string => {
  try {
    check();
  } catch (error) {
    expect(error).toBeInstanceOf(StratumError);
    return (error as StratumError).message;
  }
  return '';
};

const rootOnly: IdMapping = { kind: 'root-only', user: 'nobody' };
const rootOnlyInside: IdMapping = {
  kind: 'namespace',
  user: 'nobody',
  ids: { uids: [{ inside: 0, count: 1 }], gids: [{ inside: 0, count: 1 }], setgroups: false },
  ownLayout: true,
};
const range: IdMapping = {
  kind: 'subordinate',
  user: 'nobody',
  uids: { start: 400000, count: 65536 },
  gids: { start: 400000, count: 65536 },
};
const rangeInside: IdMapping = {
  kind: 'namespace',
  user: 'nobody',
  ids: {
    uids: [
      { inside: 0, count: 1 },
      { inside: 1, count: 65536 },
    ],
    gids: [
      { inside: 0, count: 1 },
      { inside: 1, count: 65536 },
    ],
    setgroups: true,
  },
  ownLayout: true,
};
const everyId: IdMapping = {
  kind: 'namespace',
  user: 'root',
  ids: {
    uids: [{ inside: 0, count: 4294967295 }],
    gids: [{ inside: 0, count: 4294967295 }],
    setgroups: true,
  },
  ownLayout: true,
};
const container: IdMapping = {
  kind: 'namespace',
  user: 'x',
  ids: { uids: [{ inside: 0, count: 1000 }], gids: [{ inside: 0, count: 1000 }], setgroups: true },
  // A container's namespace: not one stratum made.
  ownLayout: false,
};

describe('id mapping inside the namespace a rootless stratum runs in', () => {
  it('refuses what the layout that made it refused, in the same words', () => {
    for (const [made, inside] of [
      [rootOnly, rootOnlyInside],
      [range, rangeInside],
    ] as const) {
      for (const [uid, gid] of [
        [1000, 1000],
        [0, 5],
        [70000, 0],
        [0, 70000],
      ] as const) {
        expect(
          refusal(() => {
            checkSpecIds(spec(uid, gid), inside);
          }),
        ).toBe(
          refusal(() => {
            checkSpecIds(spec(uid, gid), made);
          }),
        );
        expect(
          refusal(() => {
            checkOwnerMapped(inside, { uid, gid });
          }),
        ).toBe(
          refusal(() => {
            checkOwnerMapped(made, { uid, gid });
          }),
        );
      }
    }
    expect(
      refusal(() => {
        checkSpecIds(spec(1000, 1000), rootOnlyInside);
      }),
    ).toMatch(/^RUN as uid 1000 gid 1000 needs root, or a subordinate id range for nobody .*uidmap/);
    expect(
      refusal(() => {
        checkSpecIds(spec(70000, 0), rangeInside);
      }),
    ).toMatch(/^RUN as uid 70000 is outside the ids mapped for nobody \(0 and 1\.\.65536/);
  });

  it('a namespace of every id refuses nothing; another shape names what it maps', () => {
    expect(
      refusal(() => {
        checkSpecIds(spec(4242, 4243, [7, 70000]), everyId);
      }),
    ).toBe('');
    expect(
      refusal(() => {
        checkOwnerMapped(everyId, { uid: 123456, gid: 1 });
      }),
    ).toBe('');
    expect(
      refusal(() => {
        checkSpecIds(spec(1000, 0), container);
      }),
    ).toMatch(
      /^RUN as uid 1000 gid 0 is outside the ids this user namespace maps \(uids 0\.\.999, gids 0\.\.999\)$/,
    );
    expect(
      refusal(() => {
        checkOwnerMapped(container, { uid: 5, gid: 5000 });
      }),
    ).toMatch(/outside the ids/);
  });

  it('setgroups and gid 5 (devpts) follow the namespace', () => {
    expect(canSetGroups(rootOnlyInside)).toBe(false);
    expect(canSetGroups(rangeInside)).toBe(true);
    expect(gidMapped(rootOnlyInside, 5)).toBe(false);
    expect(gidMapped(rangeInside, 5)).toBe(true);
    // Supplementary groups are not applied where setgroups is denied, so they are not refused.
    expect(
      refusal(() => {
        checkSpecIds(spec(0, 0, [5]), rootOnlyInside);
      }),
    ).toBe('');
  });
});
