import { StratumError } from '../errors.js';
import type { StoredCacheEntry } from '../cache/remote/format.js';
import { openImportedCache } from '../cache/remote/remote-caches.js';
import { closestRecord, type StepRecord } from '../cache/step-record.js';
import type { ExplainStep } from '../executor/build-session.js';
import { explainMiss } from '../executor/explain.js';
import type { Digest } from '../oci/types.js';

/**
 * `stratum cache diff BASE OTHER`: why a build that imports BASE misses what OTHER's last build
 * of a Dockerfile made ("why does my branch miss what main has?"). Both caches are read as
 * `--cache-from` reads them; the entries carry their key components (step-record.ts), so each
 * step of OTHER's last build is either in BASE (a build importing BASE would hit it) or explained
 * against BASE's closest entry, in `--explain`'s words. Nothing is built and no layer is fetched.
 */
export interface CacheDiffOptions {
  /** `registry:REF`, `type=registry,ref=REF` or `type=local,src=DIR`. */
  readonly base: string;
  readonly other: string;
  /** The Dockerfile as the builds named it: relative to the context (default `Dockerfile`). */
  readonly dockerfile?: string;
  /** The build's `--target` (default: the target of OTHER's last build of the Dockerfile). */
  readonly target?: string;
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
}

export interface CacheDiffStep {
  /** `<stage>/<index>`, as `--explain` numbers steps. */
  readonly step: string;
  readonly instruction: string;
  readonly key: Digest;
  /** Whether BASE holds this key: a build importing BASE would hit it. */
  readonly inBase: boolean;
  /** Why not, against BASE's closest entry (empty when in BASE). */
  readonly reasons: readonly string[];
}

export interface CacheDiffSide {
  readonly name: string;
  /** Entries the cache holds in all, and of them for this Dockerfile. */
  readonly entries: number;
  readonly entriesOfDockerfile: number;
  /** When the last build of the Dockerfile exported (undefined: none). */
  readonly lastBuild: string | undefined;
}

export interface CacheDiffResult {
  readonly dockerfile: string;
  readonly target: string;
  readonly base: CacheDiffSide;
  readonly other: CacheDiffSide;
  /** The steps of OTHER's last build of the Dockerfile, in build order. */
  readonly steps: readonly CacheDiffStep[];
}

interface Opened {
  readonly name: string;
  readonly entries: readonly StoredCacheEntry[];
}

export async function diffCaches(options: CacheDiffOptions): Promise<CacheDiffResult> {
  // Both are read side by side; when both fail, the error names BASE, whichever failed first.
  const opened = await Promise.allSettled([
    openCache(options.base, options),
    openCache(options.other, options),
  ]);
  const failed = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const [base, other] = opened.map((result) => (result as PromiseFulfilledResult<Opened>).value) as [
    Opened,
    Opened,
  ];
  const dockerfile = options.dockerfile ?? 'Dockerfile';
  const ofDockerfile = (cache: Opened): (StoredCacheEntry & { record: StepRecord })[] =>
    cache.entries.filter(
      (entry): entry is StoredCacheEntry & { record: StepRecord } =>
        entry.record !== undefined &&
        entry.record.dockerfile === dockerfile &&
        (options.target === undefined || entry.record.target === options.target),
    );
  const otherEntries = ofDockerfile(other);
  const baseEntries = ofDockerfile(base);
  const lastUsed = (entries: readonly StoredCacheEntry[]): string | undefined =>
    entries.reduce<string | undefined>(
      (latest, entry) => (latest === undefined || entry.used > latest ? entry.used : latest),
      undefined,
    );
  const otherLast = lastUsed(otherEntries);
  // One export stamps every entry of its build with the same `used`; the config lists a build's
  // entries last step first, so reversed they are in build order.
  const lastBuild = otherEntries.filter((entry) => entry.used === otherLast).reverse();
  const target = options.target ?? lastBuild[0]?.record.target ?? '';
  const baseKeys = new Set(base.entries.map((entry) => entry.key));
  const candidates = baseEntries.map((entry) => ({ record: entry.record, used: entry.used }));
  const missedInStage = new Map<string, string>();
  const steps: CacheDiffStep[] = [];
  for (const entry of lastBuild) {
    const { record } = entry;
    const stage = record.step.slice(0, record.step.lastIndexOf('/'));
    const index = record.step.slice(record.step.lastIndexOf('/') + 1);
    if (baseKeys.has(entry.key)) {
      steps.push({
        step: record.step,
        instruction: entry.instruction,
        key: entry.key,
        inBase: true,
        reasons: [],
      });
      continue;
    }
    const closest = closestRecord(candidates, record);
    // Records decoded from a config hold what SourceFileDigest holds (checked by the decoder).
    const reasons = explainMiss(
      closest?.record as ExplainStep | undefined,
      record as ExplainStep,
      missedInStage.get(stage),
      true,
      base.name,
    );
    missedInStage.set(stage, `step ${index} missed`);
    steps.push({ step: record.step, instruction: entry.instruction, key: entry.key, inBase: false, reasons });
  }
  const side = (cache: Opened, entries: readonly StoredCacheEntry[]): CacheDiffSide => ({
    name: cache.name,
    entries: cache.entries.length,
    entriesOfDockerfile: entries.length,
    lastBuild: lastUsed(entries),
  });
  return { dockerfile, target, base: side(base, baseEntries), other: side(other, otherEntries), steps };
}

/** Reads a cache as `--cache-from` does, except that an unreadable one is an error here. */
async function openCache(text: string, options: CacheDiffOptions): Promise<Opened> {
  const problems: string[] = [];
  const onWarning = (line: string): void => {
    problems.push(line);
  };
  const source = await openImportedCache(text, {
    insecureRegistries: options.insecureRegistries ?? [],
    onWarning,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    if (problems.length > 0) throw new StratumError('NOT_FOUND', problems[0]!);
    return { name: source.name, entries: [...source.stored()] };
  } finally {
    await source.close();
  }
}
