import { trace } from '../util/trace.js';
import { formatPlatform } from '../oci/platform.js';
import { compressionName } from '../oci/compression.js';
import type { LayerRef } from '../oci/image.js';
import type { Digest } from '../oci/types.js';
import { reclampLayer, writeDirectoryLayer, writeLayer } from '../snapshot/index.js';
import type { LayerDiff, WrittenLayer } from '../snapshot/index.js';
import type { BuildSession, ExplainStep } from './build-session.js';
import { cacheKey, compressionComponents, type KeyComponent } from '../cache/key.js';
import type { CacheEntry } from '../cache/store.js';
import type { ImportedStep } from '../cache/source.js';
import type { StepRecord } from '../cache/step-record.js';
import { chainId } from '../oci/digest.js';
import { LAYERS_BELOW, PARENT_KEY, explainMiss } from './explain.js';
import { withEmptyHistory, withLayer, type ImageState } from './image-state.js';
import type { StepRef } from './progress.js';
import type { RootfsSnapshot } from '../snapshot/snapshotter.js';
import type { StepAction, StepOutcome } from './step.js';
import { layerOwners } from './layer-owners.js';

/**
 * The cache protocol of a filesystem step (RUN, COPY, ADD, WORKDIR): key it, look it up in the
 * local then the shared cache, and on a hit add the cached layer without touching the rootfs; on
 * a miss materialise the rootfs, run the step, snapshot, write the difference as a layer and
 * record it in the caches.
 */

/** Where a stage stands between steps: what the next step builds on. */
export interface StepPosition {
  readonly state: ImageState;
  /** The key the next step's key chains from. */
  readonly key: Digest;
  /**
   * The DiffIDs below the next step as the cache holds them: the layers as their steps made
   * them, before SOURCE_DATE_EPOCH (which changes only times, so it must not change keys).
   */
  readonly keyLayers: readonly Digest[];
  /** The time the next history entry gets (see StageRunner). */
  readonly created: string | undefined;
  /** Why an earlier step of this stage missed, for explaining later misses. */
  readonly previousStepMissed: string | undefined;
}

export async function filesystemStep(
  build: BuildSession,
  stageRootfs: RootfsSnapshot,
  step: StepRef,
  at: StepPosition,
  action: StepAction,
): Promise<{ readonly outcome: StepOutcome; readonly at: StepPosition }> {
  let { state, created } = at;
  const components: KeyComponent[] = [
    ...(action.independent === true
      ? []
      : [
          { name: PARENT_KEY, value: at.key },
          { name: LAYERS_BELOW, value: chainId(at.keyLayers) },
        ]),
    // The variant too: arm/v6 and arm/v7 layers differ (normalised: arm64 has none, amd64 none).
    { name: 'platform', value: formatPlatform(state.platform) },
    { name: 'instruction', value: action.instruction ?? action.createdBy },
    ...action.components,
    ...compressionComponents(compressionName(build.compression)),
  ];
  const key = cacheKey(components);
  // What the next step chains from. An independent step's own key leaves the parent out, but
  // the steps after it still build on that parent (its config, its layers).
  const nextKey =
    action.independent === true
      ? cacheKey([
          { name: PARENT_KEY, value: at.key },
          { name: 'linked layer', value: key.digest },
        ]).digest
      : key.digest;
  const stepId = `${step.stage}/${step.index}`;
  const base = build.stageBases.get(step.stage);
  const current: ExplainStep = {
    key: key.digest,
    components,
    ...(action.files === undefined ? {} : { files: action.files }),
    ...(action.mountFiles === undefined ? {} : { mountFiles: action.mountFiles }),
    ...(base === undefined ? {} : { base }),
  };
  build.current.set(stepId, current);
  // What travels with the entry to --cache-to, so a miss elsewhere can be explained against it.
  const record: StepRecord = { ...build.explainPlace, step: stepId, ...current };
  const useCache = !build.ignoreCache(step.stage);
  const hit = useCache ? await build.cache.get(key.digest, build.signal) : undefined;
  const entry = hit?.entry;
  let previous: ExplainStep | undefined = build.previous?.steps[stepId];
  // No earlier build of this step here (a fresh CI machine): compare with what the imported
  // caches hold for it instead. Their file lists are SourceFileDigest's, checked when decoded.
  let imported: ImportedStep | undefined;
  if (entry === undefined && previous === undefined && useCache) {
    imported = build.cache.closest(record);
    if (imported !== undefined) previous = imported.record as ExplainStep;
  }
  {
    const reasons =
      entry !== undefined
        ? []
        : explainMiss(previous, current, at.previousStepMissed, useCache, imported?.source);
    build.emit({
      kind: 'cache',
      step,
      key: key.digest,
      hit: entry !== undefined,
      ...(hit !== undefined ? { source: hit.source } : {}),
      ...(imported !== undefined
        ? { comparedWith: `${imported.source} (its closest entry, exported ${imported.used})` }
        : {}),
      components: components.map((component) => ({ name: component.name, value: component.value })),
      reasons,
    });
  }
  if (entry !== undefined) {
    build.cache.record(entry, record);
    let used: CacheEntry = entry;
    if (build.sourceDateEpoch === undefined) created = entry.created;
    else used = await withEpoch(build, entry, build.sourceDateEpoch);
    if (used.layer === null) state = withEmptyHistory(state, used.createdBy, created);
    else state = withLayer(state, used.layer, used.createdBy, created);
    return {
      outcome: 'cached',
      at: {
        state,
        key: nextKey,
        keyLayers: entry.layer === null ? at.keyLayers : [...at.keyLayers, entry.layer.diffId],
        created,
        previousStepMissed: at.previousStepMissed,
      },
    };
  }
  const previousStepMissed = `step ${step.index} missed`;
  created = build.created;

  trace('step: cache miss');
  const mapOwner = await layerOwners();
  // Written without SOURCE_DATE_EPOCH: the cache keeps layers as the step made them, and the
  // epoch is applied to a copy (withEpoch), as BuildKit applies it at export.
  const layerOptions = {
    ...(mapOwner === undefined ? {} : { mapOwner }),
    ...(build.signal ? { signal: build.signal } : {}),
    compression: build.compression,
  };
  let layer: LayerRef;
  let entries: number;
  let undo: readonly string[] | undefined;
  /** The upperdir's adoption as the layer, when it began while the blob was stored. */
  let committing: Promise<void> | undefined;
  if (action.independent === true) {
    // Nothing below is read or written: the next step's rootfs gets the layer when it syncs.
    const dir = await build.workspace.dir('link');
    await action.execute(dir);
    const written = await writeDirectoryLayer(dir, build.blobs, layerOptions);
    layer = { descriptor: written.descriptor, diffId: written.diffId };
    entries = written.entries;
  } else {
    const rootfs = await stageRootfs.prepare(state.layers, build.signal);
    trace('step: rootfs prepared');
    await action.execute(rootfs, await stageRootfs.offline?.());
    trace('step: executed');
    const diff = await stageRootfs.commit(build.signal);
    trace('step: diff taken');
    undo = undoRecord(diff);
    const undoing = undo;
    // Every filesystem step commits a layer, an empty one when it changed nothing (BuildKit's
    // rule: RUN, COPY, ADD and WORKDIR below / are never empty history entries). A small
    // layer's digests are known before its blob is stored: the upperdir is adopted as the layer
    // meanwhile (with SOURCE_DATE_EPOCH the clamped layer is adopted, known only later).
    const writing = writeLayer(diff, build.blobs, {
      ...layerOptions,
      ...(build.sourceDateEpoch === undefined
        ? {
            beforeStore: (early: WrittenLayer) => {
              committing = stageRootfs.committed(
                { descriptor: early.descriptor, diffId: early.diffId },
                undoing,
              );
              committing.catch(() => undefined); // awaited below
            },
          }
        : {}),
    });
    let written: WrittenLayer;
    try {
      written = await writing;
    } catch (error) {
      // Not before the adoption begun meanwhile has ended: the caller removes the upperdir.
      await committing?.catch(() => undefined);
      throw error;
    }
    layer = { descriptor: written.descriptor, diffId: written.diffId };
    entries = diff.changes.length;
    trace('step: layer written');
  }
  const newEntry = {
    key: key.digest,
    layer,
    createdBy: action.createdBy,
    instruction: step.instruction.split('\n')[0]!.slice(0, 200),
    created: build.created ?? new Date().toISOString(),
  };
  // The entry and the unpacked layer (a rename of the upperdir) do not depend on each other:
  // they are written side by side. (A failure of the entry is still this step's.)
  const putting = build.cache.put(newEntry);
  putting.catch(() => undefined);
  build.cache.record(newEntry, record);
  if (build.sourceDateEpoch !== undefined) {
    await putting;
    const clamped = (await withEpoch(build, newEntry, build.sourceDateEpoch)).layer;
    if (clamped !== null) layer = clamped;
  }
  if (committing !== undefined) await committing;
  else if (action.independent !== true) await stageRootfs.committed(layer, undo);
  trace('step: layer committed');
  await putting;
  trace('step: cache entry put');
  state = withLayer(state, layer, action.createdBy, build.created);
  const outcome: StepOutcome = { digest: layer.descriptor.digest, size: layer.descriptor.size, entries };
  return {
    outcome,
    at: {
      state,
      key: nextKey,
      keyLayers: [...at.keyLayers, newEntry.layer.diffId],
      created,
      previousStepMissed,
    },
  };
}

/**
 * The entry's layer with SOURCE_DATE_EPOCH applied (snapshot/layer-reclamp.ts), kept in the cache
 * under a key of its own, so a build with the same epoch takes it as it is and one with another
 * epoch (CI often sets it from the commit) clamps the cached layer again instead of running the
 * step: times in the layer depend on the epoch, what the step made does not.
 */
async function withEpoch(build: BuildSession, entry: CacheEntry, epoch: number): Promise<CacheEntry> {
  if (entry.layer === null) return entry;
  const key = cacheKey([
    { name: 'layer of', value: entry.key },
    { name: 'SOURCE_DATE_EPOCH', value: String(epoch) },
  ]).digest;
  const kept = (await build.cache.get(key, build.signal))?.entry;
  if (kept !== undefined) {
    build.cache.record(kept);
    return kept;
  }
  const written = await reclampLayer(build.blobs, entry.layer.descriptor, epoch, {
    compression: build.compression,
    ...(build.signal ? { signal: build.signal } : {}),
  });
  const clamped: CacheEntry = {
    ...entry,
    key,
    layer: { descriptor: written.descriptor, diffId: written.diffId },
  };
  await build.cache.put(clamped);
  build.cache.record(clamped);
  return clamped;
}

/**
 * How to take a layer back off a kept filesystem: possible when the step only added paths
 * (its parents are unchanged directories), by removing them, deepest first. Anything else
 * (a modified, deleted or retyped path) cannot be undone without the old content.
 */
function undoRecord(diff: LayerDiff): readonly string[] | undefined {
  const added: string[] = [];
  for (const change of diff.changes) {
    if (change.kind === 'added') added.push(change.path);
    else if (change.kind !== 'parent') return undefined;
  }
  // Only the top of each added subtree needs removing.
  const tops = added.filter((path) => !added.some((other) => path !== other && path.startsWith(`${other}/`)));
  return tops.sort((a, b) => b.length - a.length);
}
