/**
 * What a build reports while it runs, as plain data. The CLI renders these (plain lines, a live
 * terminal view, or one JSON object per line); the engine never prints.
 */
export interface StepRef {
  /** Stage name, or its index as a string when unnamed. */
  readonly stage: string;
  /** 1-based index of the step within its stage, and how many steps the stage has. */
  readonly index: number;
  readonly total: number;
  /** The instruction as written, after expansion where Docker expands it. */
  readonly instruction: string;
  readonly file: string;
  readonly line: number;
}

export type CacheComponent = { readonly name: string; readonly value: string };

export type BuildEvent =
  | { readonly kind: 'stage-start'; readonly stage: string; readonly base: string }
  | { readonly kind: 'step-start'; readonly step: StepRef }
  | {
      readonly kind: 'step-output';
      readonly step: StepRef;
      readonly stream: 'stdout' | 'stderr';
      readonly text: string;
    }
  | {
      readonly kind: 'step-end';
      readonly step: StepRef;
      readonly outcome: 'done' | 'cached' | 'failed';
      readonly seconds: number;
      /** The layer the step produced; absent for metadata-only steps and steps that changed nothing. */
      readonly layer?: { readonly digest: string; readonly size: number; readonly entries: number };
    }
  | {
      readonly kind: 'cache';
      readonly step: StepRef;
      readonly key: string;
      readonly hit: boolean;
      readonly source?: string;
      /** A miss explained against an imported cache (no earlier build here): which, and when exported. */
      readonly comparedWith?: string;
      readonly components: readonly CacheComponent[];
      readonly reasons: readonly string[];
    }
  /** A stage's root filesystem was extracted from its layers (only when a step must run). */
  | { readonly kind: 'materialize'; readonly stage: string; readonly layers: number }
  | { readonly kind: 'snapshotter'; readonly name: 'overlay' | 'scan'; readonly reason: string }
  | { readonly kind: 'isolation'; readonly mode: 'namespaces' | 'proot'; readonly reason: string }
  | { readonly kind: 'warning'; readonly message: string }
  /**
   * A source the build fetched from outside the context: an ADD URL by the digest of what was
   * downloaded, a git source by its commit (provenance lists them as materials).
   */
  | {
      readonly kind: 'material';
      readonly uri: string;
      readonly digest: { readonly sha256: string } | { readonly sha1: string };
    }
  | { readonly kind: 'image'; readonly digest: string; readonly destination: string };

export type ProgressListener = (event: BuildEvent) => void;
