import { describe, expect, it } from 'vitest';
import { compareLayerOrder, compareUtf8 } from '../../src/snapshot/paths.js';

/** The definition, written the plain way: split at '/', compare component by component. */
function splitOrder(a: string, aWhiteout: boolean, b: string, bWhiteout: boolean): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const aw = aWhiteout && i === pa.length - 1;
    const bw = bWhiteout && i === pb.length - 1;
    if (aw !== bw) return aw ? -1 : 1;
    if (pa[i] !== pb[i]) return compareUtf8(pa[i]!, pb[i]!);
  }
  return pa.length - pb.length;
}

/** Names that trip a byte-wise compare of whole paths: '-' and '.' sort below '/'. */
const NAMES = ['a', 'a-b', 'a.b', 'a0', 'ab', 'b', 'é', '😀', '\uffff', 'caf\udce9', 'caf\udcc2', 'A', ''];

function randomPath(random: () => number): string {
  const depth = 1 + Math.floor(random() * 4);
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) {
    const name = NAMES[Math.floor(random() * NAMES.length)]!;
    parts.push(name === '' ? 'x' : name);
  }
  return parts.join('/');
}

/** A small deterministic generator, so a failure reproduces. */
function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('compareLayerOrder', () => {
  it('orders as comparing the split paths does, whiteouts and escaped bytes included', () => {
    const random = mulberry32(25);
    for (let i = 0; i < 20_000; i++) {
      const a = randomPath(random);
      const b = random() < 0.2 ? a : randomPath(random);
      const aw = random() < 0.3;
      const bw = random() < 0.3;
      const expected = Math.sign(splitOrder(a, aw, b, bw));
      expect(Math.sign(compareLayerOrder(a, aw, b, bw)), `${a} (${aw}) vs ${b} (${bw})`).toBe(expected);
    }
  });

  it('puts a directory before its subtree, its whiteouts first, and "-" or "." names after the subtree', () => {
    const paths: [string, boolean][] = [
      ['a-b', false],
      ['a/z', false],
      ['a', false],
      ['a/b/c', false],
      ['a/old', true],
      ['a.b', false],
      ['a/b', false],
    ];
    paths.sort(([a, aw], [b, bw]) => compareLayerOrder(a, aw, b, bw));
    expect(paths).toEqual([
      ['a', false],
      ['a/old', true],
      ['a/b', false],
      ['a/b/c', false],
      ['a/z', false],
      ['a-b', false],
      ['a.b', false],
    ]);
  });
});
