/**
 * "Did you mean" for unknown instructions, flags and mount options, like BuildKit's
 * util/suggest: the closest candidate by edit distance, if it is close enough.
 */

function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest candidate within 2 edits (1 for words of up to 3 characters), if any. */
export function suggest(
  word: string,
  candidates: readonly string[],
  caseSensitive = false,
): string | undefined {
  if (word === '') return undefined;
  const needle = caseSensitive ? word : word.toLowerCase();
  const limit = needle.length <= 3 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const distance = levenshtein(needle, caseSensitive ? candidate : candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
