import type { KeyComponent } from '../cache/key.js';
import type { ExplainStep } from './build-session.js';
import type { ImageState } from './image-state.js';

/**
 * The contract between the stage runner and the filesystem steps (RUN, COPY, ADD, WORKDIR):
 * what a step sees of its stage (StepEnv) and what it hands back to be keyed and run
 * (StepAction). Types only, so the step modules and the runner need not import each other.
 */

/** What RUN and COPY need to know about the stage they run in. */
export interface StepEnv {
  readonly state: ImageState;
  /** ARGs declared in this stage that have a value, in declaration order. */
  readonly args: readonly (readonly [string, string])[];
  readonly lookup: (name: string) => string | undefined;
  readonly stageIndex: number;
  /** Materialises the stage's rootfs as it is before this step. */
  readonly rootfs: () => Promise<string>;
}

/** A filesystem step's outcome before it is recorded. */
export interface StepAction {
  /** Key components beyond parent/platform/instruction. */
  readonly components: readonly KeyComponent[];
  readonly createdBy: string;
  /** The instruction as keyed, when it should differ from createdBy (RUN leaves out its ARGs). */
  readonly instruction?: string;
  /** Source files, for explaining COPY/ADD misses. */
  readonly files?: ExplainStep['files'];
  /** For RUN: the files each context bind mount shows, by key component name. */
  readonly mountFiles?: ExplainStep['mountFiles'];
  /**
   * COPY/ADD --link (BuildKit's MergeOp): `execute` runs on an empty directory instead of the
   * rootfs, and that directory becomes the layer, stacked on whatever is below. The key leaves
   * the parent out, so the same step over a changed base is a hit and gives the same layer.
   */
  readonly independent?: boolean;
  /** Does the work on the materialised rootfs (an empty directory when `independent`). */
  readonly execute: (rootfs: string) => Promise<void>;
}

/** A step's result: the layer it made, a cache hit, or nothing on disk. */
export type StepOutcome =
  { readonly digest: string; readonly size: number; readonly entries: number } | 'cached' | 'none';
