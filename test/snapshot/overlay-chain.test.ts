import { describe, expect, it } from 'vitest';
import { withoutRepeats } from '../../src/snapshot/overlay.js';

describe('overlay lowerdir chain', () => {
  it('a layer that occurs twice (identical steps share a DiffID) keeps only its topmost copy', () => {
    expect(withoutRepeats(['base', 'x', 'mid', 'x', 'top'])).toEqual(['base', 'mid', 'x', 'top']);
    expect(withoutRepeats(['a', 'a', 'a'])).toEqual(['a']);
    expect(withoutRepeats(['a', 'b'])).toEqual(['a', 'b']);
    expect(withoutRepeats([])).toEqual([]);
  });
});
