import { trace } from '../util/trace.js';
import { lchown } from 'node:fs/promises';
import { setImmediate as eventLoopTurn } from 'node:timers/promises';
import { fsPath } from '../util/file-names.js';
import { StratumError, wrap } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { expandWord, expandWords, parseDockerfile } from '../parser/index.js';
import type { Instruction, Stage } from '../parser/index.js';
import type { BuildSession, StageResult } from './build-session.js';
import { cacheKey } from '../cache/key.js';
import { PARENT_KEY } from './explain.js';
import { mkdirInRoot } from './context/index.js';
import { filesystemStep } from './filesystem-step.js';
import { withConfig, withDefaultPath, type ImageState } from './image-state.js';
import { argDeclarations, metadataChange, workdirChange } from './metadata.js';
import { StageState, type ConfigChange } from './stage-state.js';
import type { StepRef } from './progress.js';
import type { RootfsSnapshot } from '../snapshot/snapshotter.js';
import { rootlessOwners } from './rootless-owners.js';
import { runStep } from './run-step.js';
import { copyStep } from './copy-step.js';
import { resolveChown } from './users.js';
import type { StepAction, StepEnv, StepOutcome } from './step.js';

/**
 * Runs one stage's instructions. Metadata instructions change the config and add a history
 * entry; filesystem instructions (RUN, COPY, ADD, WORKDIR) go through the cache: a hit adds the
 * cached layer without touching the rootfs, a miss materialises the rootfs, runs the step,
 * snapshots, and writes the difference as a layer.
 */
export interface StageInput {
  readonly stage: Stage;
  readonly label: string;
  readonly base: ImageState;
  /** What the first step's key builds on: the base's ChainID, or the base stage's final key. */
  readonly baseKey: Digest;
  /** The base's DiffIDs as the cache knows them (a base stage's keyLayers). */
  readonly baseKeyLayers: readonly Digest[];
  /** ONBUILD triggers of the base, run before the stage's own instructions. */
  readonly triggers: readonly string[];
  /** When the base was made: metadata steps before the first layer keep this time. */
  readonly baseCreated: string | undefined;
  /**
   * The ARGs of the base stage (FROM another stage): BuildKit's stage starts from its base's
   * state, whose environment holds the base's ARG values (dispatchState.init).
   */
  readonly args?: ReadonlyMap<string, string | undefined>;
}

export class StageRunner {
  private readonly image: StageState;
  private key: Digest;
  private readonly rootfs: RootfsSnapshot;
  /** ARGs declared in this stage so far, with their values (undefined: declared, no value). */
  private readonly args = new Map<string, string | undefined>();
  private cmdSet = false;
  /**
   * The time history entries get. A cache hit brings the time its layer was made, a miss the
   * build's time, and metadata steps take the time of what they follow: so a fully cached
   * rebuild reproduces the same config, hence the same image digest, as Docker's does.
   */
  private created: string | undefined;
  private previousStepMissed: string | undefined;
  /** The DiffIDs below the next step as the cache knows them (before SOURCE_DATE_EPOCH). */
  private keyLayers: readonly Digest[];

  constructor(
    private readonly build: BuildSession,
    private readonly input: StageInput,
  ) {
    // Docker clears the base's ONBUILD list once its triggers have run.
    const base = withDefaultPath(input.base);
    this.image = new StageState(input.triggers.length > 0 ? withConfig(base, { OnBuild: undefined }) : base);
    this.key = input.baseKey;
    this.keyLayers = input.baseKeyLayers;
    for (const [name, value] of input.args ?? []) this.args.set(name, value);
    this.created = build.sourceDateEpoch === undefined ? input.baseCreated : build.created;
    this.rootfs = build.snapshotter.rootfs(`stage-${input.label}`, {
      onMaterialize: (layers) => {
        build.emit({ kind: 'materialize', stage: input.label, layers });
      },
    });
  }

  async run(): Promise<StageResult> {
    const triggers = this.input.triggers.flatMap((trigger) => this.parseTrigger(trigger));
    const all = [...triggers, ...this.input.stage.instructions];
    for (const [position, instruction] of all.entries()) {
      // Metadata steps never wait on I/O: without a turn of the event loop between steps, a
      // signal's handler (which aborts the build) would run only after the last of them.
      await eventLoopTurn();
      this.build.signal?.throwIfAborted();
      const step: StepRef = {
        stage: this.input.label,
        index: position + 1,
        total: all.length,
        instruction: instruction.original,
        file: this.build.file,
        line: instruction.location.line,
      };
      await this.step(instruction, step);
    }
    const state = this.image.state;
    const rootfs = this.rootfs;
    const signal = this.build.signal;
    return {
      label: this.input.label,
      state,
      finalKey: this.key,
      keyLayers: this.keyLayers,
      created: this.created,
      args: new Map(this.args),
      rootfs: () => rootfs.view(state.layers, signal),
      removeRootfs: () => rootfs.remove(),
    };
  }

  private parseTrigger(trigger: string): Instruction[] {
    const parsed = parseDockerfile(`FROM scratch\n${trigger}\n`, { file: `${this.input.label} ONBUILD` });
    const error = parsed.diagnostics.find((diagnostic) => diagnostic.severity === 'error');
    if (error !== undefined || parsed.stages.length !== 1) {
      throw new StratumError(
        'BUILD_FAILED',
        `ONBUILD trigger "${trigger}" of the base image: ${error?.message ?? 'not one instruction'}`,
      );
    }
    return [...parsed.stages[0]!.instructions];
  }

  /** The value of a name for expansion: ENV first (it shadows ARG), then this stage's ARGs. */
  private lookup = (name: string): string | undefined => this.image.getEnv(name) ?? this.args.get(name);

  private where(step: StepRef): string {
    return `${step.file}:${step.line}`;
  }

  private expand(text: string, step: StepRef): string {
    return expandWord(text, this.lookup, { escapeChar: this.build.escapeChar, where: this.where(step) });
  }

  private expandList(texts: readonly string[], step: StepRef): string[] {
    return texts.flatMap((text) =>
      expandWords(text, this.lookup, { escapeChar: this.build.escapeChar, where: this.where(step) }),
    );
  }

  private async step(instruction: Instruction, step: StepRef): Promise<void> {
    const started = Date.now();
    this.build.emit({ kind: 'step-start', step });
    trace(`step start ${step.stage} ${step.index} ${step.instruction}`);
    if (instruction.kind === 'run') this.build.runStarting();
    try {
      const outcome = await this.dispatch(instruction, step);
      trace(`step end ${typeof outcome === 'string' ? outcome : 'layer'}`);
      if (outcome !== 'cached') {
        this.build.emit({
          kind: 'step-end',
          step,
          outcome: 'done',
          seconds: (Date.now() - started) / 1000,
          ...(outcome === 'none' ? {} : { layer: outcome }),
        });
      } else {
        this.build.emit({
          kind: 'step-end',
          step,
          outcome: 'cached',
          seconds: (Date.now() - started) / 1000,
        });
      }
    } catch (error) {
      this.build.emit({ kind: 'step-end', step, outcome: 'failed', seconds: (Date.now() - started) / 1000 });
      // Every error of a step names its Dockerfile line; a bad reference on that line is the
      // Dockerfile's fault, not a command-line usage error.
      throw wrap(
        error,
        `${this.where(step)}: stage ${step.stage}, step ${step.index}/${step.total} ${shortInstruction(step.instruction)}`,
        {
          location: { file: step.file, line: step.line },
          ...(error instanceof StratumError && error.code === 'USAGE'
            ? { code: 'BUILD_FAILED' as const }
            : {}),
        },
      );
    }
  }

  private metadata(
    step: StepRef,
    createdBy: string,
    change?: ConfigChange,
    rollsKey = true,
    inHistory = true,
  ): StepOutcome {
    if (change !== undefined) this.image.apply(change);
    if (inHistory) this.image.addEmptyHistory(createdBy, this.created ?? this.build.created);
    if (!rollsKey) return 'none';
    // Metadata changes the config, so later steps build on a different parent (as in Docker's
    // classic builder). ARG is the exception: its value reaches the keys where it is used.
    this.key = cacheKey([
      { name: PARENT_KEY, value: this.key },
      { name: 'metadata', value: createdBy },
    ]).digest;
    const stepId = `${step.stage}/${step.index}`;
    const previous = this.build.previous?.steps[stepId];
    const components = [{ name: 'instruction', value: createdBy }];
    this.build.current.set(stepId, { key: this.key, components });
    if (previous !== undefined && previous.key !== this.key && this.previousStepMissed === undefined) {
      const before = previous.components.find((component) => component.name === 'instruction')?.value;
      this.previousStepMissed = `step ${step.index} changed${before === undefined ? '' : `: ${before} → ${createdBy}`}`;
    }
    return 'none';
  }

  private async dispatch(instruction: Instruction, step: StepRef): Promise<StepOutcome> {
    switch (instruction.kind) {
      case 'from':
        throw new StratumError('BUILD_FAILED', `${this.where(step)}: FROM inside a stage`);
      case 'arg':
        return this.arg(instruction, step);
      case 'workdir':
        return this.workdir(instruction.path, step);
      case 'run':
        return this.filesystemStep(step, await runStep(this.build, this.stepEnv(), instruction, step));
      case 'copy':
      case 'add':
        return this.filesystemStep(step, await copyStep(this.build, this.stepEnv(), instruction, step));
      case 'env':
      case 'label':
      case 'expose':
      case 'volume':
      case 'user':
      case 'stopsignal':
      case 'maintainer':
      case 'shell':
      case 'cmd':
      case 'entrypoint':
      case 'healthcheck':
      case 'onbuild': {
        const change = metadataChange(instruction, {
          config: this.image.scalarConfig,
          expand: (text) => this.expand(text, step),
          expandList: (texts) => this.expandList(texts, step),
          where: this.where(step),
          cmdSet: this.cmdSet,
        });
        if (instruction.kind === 'cmd') this.cmdSet = true;
        if (change.author !== undefined) this.image.setAuthor(change.author);
        // BuildKit records no history entry for ONBUILD (moby's classic builder did).
        return this.metadata(step, change.createdBy, change, true, instruction.kind !== 'onbuild');
      }
    }
  }

  /** What RUN/COPY see of the stage: its config, ARGs and rootfs. */
  private stepEnv(): StepEnv {
    const argsInScope: [string, string][] = [];
    for (const [name, value] of this.args) if (value !== undefined) argsInScope.push([name, value]);
    return {
      state: this.image.state,
      args: argsInScope,
      lookup: this.lookup,
      stageIndex: this.input.stage.index,
      rootfs: () => this.rootfs.view(this.image.state.layers, this.build.signal),
    };
  }

  private arg(instruction: Extract<Instruction, { kind: 'arg' }>, step: StepRef): StepOutcome {
    const { declared, createdBy } = argDeclarations(instruction, {
      buildArgs: this.build.buildArgs,
      metaArgs: this.build.metaArgs,
      // A default sees the declarations before it on its line, as if each were its own ARG.
      expand: (text, earlier) =>
        expandWord(
          text,
          (name) => this.image.getEnv(name) ?? (earlier.has(name) ? earlier.get(name) : this.args.get(name)),
          { escapeChar: this.build.escapeChar, where: this.where(step) },
        ),
    });
    // An ARG with no value leaves one the name already has (BuildKit adds no env for it, and
    // the state's env keeps the earlier ARG's or the base stage's value).
    for (const [name, value] of declared)
      if (value !== undefined || !this.args.has(name)) this.args.set(name, value);
    return this.metadata(step, createdBy, undefined, false);
  }

  private async workdir(path: string, step: StepRef): Promise<StepOutcome> {
    const { configPatch, createdBy, workdir, directory } = workdirChange(
      this.image.scalarConfig,
      this.expand(path, step),
    );
    this.image.apply({ configPatch });
    if (directory === '/') return this.metadata(step, createdBy);
    // BuildKit's WORKDIR is a mkdir -p as the stage's USER (an existing directory is left as it
    // is), committed as a layer even when that changed nothing.
    const user = this.image.scalarConfig.User ?? '';
    return this.filesystemStep(step, {
      components: [{ name: 'workdir', value: workdir }],
      createdBy,
      execute: async (rootfs) => {
        const owner = user === '' ? { uid: 0, gid: 0 } : await resolveChown(rootfs, user);
        const rootless = await rootlessOwners();
        const created: string[] = [];
        await mkdirInRoot(rootfs, directory, owner, async (path, { uid, gid }) => {
          if (rootless === undefined || (uid === 0 && gid === 0)) await lchown(fsPath(path), uid, gid);
          else created.push(path);
        });
        if (created.length > 0 && rootless !== undefined) {
          rootless.check(owner);
          await rootless.give(created.map((path) => ({ op: 'chown', path, ...owner, mode: 0o755 })));
        }
      },
    });
  }

  private async filesystemStep(step: StepRef, action: StepAction): Promise<StepOutcome> {
    const { outcome, at } = await filesystemStep(
      this.build,
      this.rootfs,
      step,
      {
        state: this.image.state,
        key: this.key,
        keyLayers: this.keyLayers,
        created: this.created,
        previousStepMissed: this.previousStepMissed,
      },
      action,
    );
    this.image.reset(at.state);
    this.key = at.key;
    this.keyLayers = at.keyLayers;
    this.created = at.created;
    this.previousStepMissed = at.previousStepMissed;
    return outcome;
  }
}

/** Longest instruction text an error message shows. */
const INSTRUCTION_SHOWN = 120;

/**
 * The instruction for an error message: its first line, at most INSTRUCTION_SHOWN characters,
 * with `…` where it was cut (a cut `rm -rf /var/lib/apt/lists/*` read as another command).
 */
export function shortInstruction(instruction: string): string {
  const firstLine = instruction.split('\n')[0]!;
  const cut = firstLine.length > INSTRUCTION_SHOWN || firstLine.length < instruction.length;
  return cut ? `${firstLine.slice(0, INSTRUCTION_SHOWN)}…` : firstLine;
}
