import { posix } from 'node:path';
import { formatPlatform } from '../oci/platform.js';
import { StratumError, wrap } from '../errors.js';
import { compressionName } from '../oci/compression.js';
import type { LayerRef } from '../oci/image.js';
import type { ContainerConfig, Digest, HealthConfig } from '../oci/types.js';
import { expandWord, expandWords, parseDockerfile } from '../parser/index.js';
import type { Instruction, Stage } from '../parser/index.js';
import { isEmptyDiff, writeLayer } from '../snapshot/index.js';
import type { LayerChange, LayerDiff } from '../snapshot/index.js';
import type { BuildContext, ExplainStep, StageResult } from './build-context.js';
import { cacheKey, chainId, compressionComponents, type KeyComponent } from './cache/key.js';
import { LAYERS_BELOW, PARENT_KEY, explainMiss } from './explain.js';
import { mkdirInRoot } from './context/index.js';
import { goPlainList, goQuotedList, healthcheckCreatedBy } from './history.js';
import {
  getEnv,
  setEnv,
  withConfig,
  withDefaultPath,
  withEmptyHistory,
  withLayer,
  type ImageState,
} from './image-state.js';
import type { StepRef } from './progress.js';
import type { StageRootfs } from './rootfs.js';
import { runStep } from './run-step.js';
import { copyStep } from './copy-step.js';
import { formatExposedPorts } from './ports.js';

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
  /** ONBUILD triggers of the base, run before the stage's own instructions. */
  readonly triggers: readonly string[];
  /** When the base was made: metadata steps before the first layer keep this time. */
  readonly baseCreated: string | undefined;
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
   * When the step changes nothing: the entries to commit anyway (COPY/ADD, as the classic
   * builder does), read from the step's rootfs before the commit. Without it, such a step gets
   * an empty history entry.
   */
  readonly unchangedLayer?: (rootfs: string) => Promise<readonly LayerChange[]>;
  /** Does the work on the materialised rootfs. */
  readonly execute: (rootfs: string) => Promise<void>;
}

/**
 * Rootless builds run steps in a user namespace that maps our uid and gid to 0: what they
 * create is ours on disk and root's in the layer.
 */
const ROOTLESS_OWNER: ((uid: number, gid: number) => readonly [number, number]) | undefined =
  process.getuid?.() === 0
    ? undefined
    : (uid, gid) => [uid === process.getuid?.() ? 0 : uid, gid === process.getgid?.() ? 0 : gid];

/** A step's result: the layer it made, a cache hit, or nothing on disk. */
type StepOutcome =
  { readonly digest: string; readonly size: number; readonly entries: number } | 'cached' | 'none';

export class StageRunner {
  private state: ImageState;
  private key: Digest;
  private readonly rootfs: StageRootfs;
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

  constructor(
    private readonly build: BuildContext,
    private readonly input: StageInput,
  ) {
    this.state = withDefaultPath(input.base);
    this.key = input.baseKey;
    this.created = build.sourceDateEpoch === undefined ? input.baseCreated : build.created;
    this.rootfs = build.rootfsFactory.create(`stage-${input.label}`, (layers) => {
      build.emit({ kind: 'materialize', stage: input.label, layers });
    });
  }

  async run(): Promise<StageResult> {
    const triggers = this.input.triggers.flatMap((trigger) => this.parseTrigger(trigger));
    // Docker clears the base's ONBUILD list once its triggers have run.
    if (this.input.triggers.length > 0) this.state = withConfig(this.state, { OnBuild: undefined });
    const all = [...triggers, ...this.input.stage.instructions];
    for (const [position, instruction] of all.entries()) {
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
    const state = this.state;
    const rootfs = this.rootfs;
    const signal = this.build.signal;
    return {
      label: this.input.label,
      state,
      finalKey: this.key,
      created: this.created,
      rootfs: () => rootfs.sync(state.layers, signal),
      keepRootfs: () => rootfs.keep(),
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
  private lookup = (name: string): string | undefined =>
    getEnv(this.state.config.Env, name) ?? this.args.get(name);

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
    try {
      const outcome = await this.dispatch(instruction, step);
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
        `${this.where(step)}: stage ${step.stage}, step ${step.index}/${step.total} ${step.instruction.split('\n')[0]!.slice(0, 120)}`,
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
    patch?: Partial<Record<keyof ContainerConfig, unknown>>,
    rollsKey = true,
  ): StepOutcome {
    if (patch !== undefined) this.state = withConfig(this.state, patch);
    this.state = withEmptyHistory(this.state, createdBy, this.created ?? this.build.created);
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
      case 'env': {
        let env = this.state.config.Env;
        const parts: string[] = [];
        // Every pair of one ENV line sees the environment from before the line (BuildKit).
        const values = instruction.pairs.map(
          (pair) => [this.expand(pair.key, step), this.expand(pair.value, step)] as const,
        );
        for (const [key, value] of values) {
          if (key === '')
            throw new StratumError('BUILD_FAILED', `${this.where(step)}: ENV names can not be blank`);
          env = setEnv(env, key, value);
          parts.push(`${key}=${value}`);
        }
        return this.metadata(step, `ENV ${parts.join(' ')}`, { Env: env });
      }
      case 'label': {
        const labels: Record<string, string> = { ...(this.state.config.Labels ?? {}) };
        const parts: string[] = [];
        for (const pair of instruction.pairs) {
          const key = this.expand(pair.key, step);
          const value = this.expand(pair.value, step);
          if (key === '')
            throw new StratumError('BUILD_FAILED', `${this.where(step)}: LABEL names can not be blank`);
          labels[key] = value;
          parts.push(`${key}=${value}`);
        }
        return this.metadata(step, `LABEL ${parts.join(' ')}`, { Labels: labels });
      }
      case 'expose': {
        const ports = formatExposedPorts(this.expandList(instruction.ports, step), this.where(step));
        const exposed: Record<string, Record<string, never>> = { ...(this.state.config.ExposedPorts ?? {}) };
        for (const port of ports) exposed[port] = {};
        return this.metadata(
          step,
          `EXPOSE map[${[...ports]
            .sort()
            .map((port) => `${port}:{}`)
            .join(' ')}]`,
          { ExposedPorts: exposed },
        );
      }
      case 'volume': {
        const volumes: Record<string, Record<string, never>> = { ...(this.state.config.Volumes ?? {}) };
        const list =
          instruction.form === 'exec'
            ? instruction.volumes.map((volume) => this.expand(volume, step))
            : this.expandList(instruction.volumes, step);
        for (const volume of list) {
          if (volume.trim() === '')
            throw new StratumError(
              'BUILD_FAILED',
              `${this.where(step)}: VOLUME specified can not be an empty string`,
            );
          volumes[volume] = {};
        }
        return this.metadata(step, `VOLUME ${goPlainList(list)}`, { Volumes: volumes });
      }
      case 'user': {
        const user = this.expand(instruction.user, step);
        return this.metadata(step, `USER ${user}`, { User: user });
      }
      case 'stopsignal': {
        const signal = this.expand(instruction.signal, step);
        return this.metadata(step, `STOPSIGNAL ${signal}`, { StopSignal: signal });
      }
      case 'maintainer':
        this.state = { ...this.state, author: instruction.maintainer };
        return this.metadata(step, `MAINTAINER ${instruction.maintainer}`);
      case 'shell':
        return this.metadata(step, `SHELL ${goPlainList(instruction.shell)}`, {
          Shell: [...instruction.shell],
        });
      case 'cmd': {
        const command = this.commandLine(instruction.form, instruction.command);
        this.cmdSet = true;
        return this.metadata(step, `CMD ${goQuotedList(command)}`, { Cmd: command });
      }
      case 'entrypoint': {
        const command = this.commandLine(instruction.form, instruction.command);
        const patch: Partial<Record<keyof ContainerConfig, unknown>> = { Entrypoint: command };
        // An ENTRYPOINT resets the CMD inherited from the base (not one set in this stage).
        if (!this.cmdSet) patch.Cmd = undefined;
        return this.metadata(step, `ENTRYPOINT ${goQuotedList(command)}`, patch);
      }
      case 'healthcheck': {
        const health: HealthConfig = {
          Test: [...instruction.test],
          ...(instruction.interval ? { Interval: instruction.interval } : {}),
          ...(instruction.timeout ? { Timeout: instruction.timeout } : {}),
          ...(instruction.startPeriod ? { StartPeriod: instruction.startPeriod } : {}),
          ...(instruction.startInterval ? { StartInterval: instruction.startInterval } : {}),
          ...(instruction.retries ? { Retries: instruction.retries } : {}),
        };
        // The classic builder's commit fills the fields a HEALTHCHECK leaves unset (0) from the
        // healthcheck before it (BuildKit replaces it whole); the history shows them as written.
        const before = this.state.config.Healthcheck;
        const merged: HealthConfig = {
          Test: health.Test ?? [],
          ...pickSet('Interval', health, before),
          ...pickSet('Timeout', health, before),
          ...pickSet('StartPeriod', health, before),
          ...pickSet('StartInterval', health, before),
          ...pickSet('Retries', health, before),
        };
        return this.metadata(step, healthcheckCreatedBy(health), { Healthcheck: merged });
      }
      case 'onbuild':
        return this.metadata(step, `ONBUILD ${instruction.expression}`, {
          OnBuild: [...(this.state.config.OnBuild ?? []), instruction.expression],
        });
      case 'workdir':
        return this.workdir(instruction.path, step);
      case 'run':
        return this.filesystemStep(step, runStep(this.build, this.stepEnv(), instruction, step));
      case 'copy':
      case 'add':
        return this.filesystemStep(step, copyStep(this.build, this.stepEnv(), instruction, step));
    }
  }

  /** What RUN/COPY see of the stage: its config, ARGs and rootfs. */
  private stepEnv(): import('./run-step.js').StepEnv {
    const argsInScope: [string, string][] = [];
    for (const [name, value] of this.args) if (value !== undefined) argsInScope.push([name, value]);
    return {
      state: this.state,
      args: argsInScope,
      lookup: this.lookup,
      stageIndex: this.input.stage.index,
      rootfs: () => this.rootfs.sync(this.state.layers, this.build.signal),
    };
  }

  private commandLine(form: 'shell' | 'exec', command: readonly string[]): string[] {
    if (form === 'exec') return [...command];
    const shell = this.state.config.Shell ?? ['/bin/sh', '-c'];
    return [...shell, command.join(' ')];
  }

  private arg(instruction: Extract<Instruction, { kind: 'arg' }>, step: StepRef): StepOutcome {
    const parts: string[] = [];
    for (const declaration of instruction.declarations) {
      const name = declaration.name;
      let value: string | undefined;
      const given = this.build.buildArgs.get(name);
      if (given !== undefined) value = given;
      else if (declaration.defaultValue !== undefined) value = this.expand(declaration.defaultValue, step);
      else value = this.build.metaArgs.get(name);
      this.args.set(name, value);
      parts.push(value === undefined ? name : `${name}=${value}`);
    }
    return this.metadata(step, `ARG ${parts.join(' ')}`, undefined, false);
  }

  private async workdir(path: string, step: StepRef): Promise<StepOutcome> {
    const expanded = this.expand(path, step);
    const current = this.state.config.WorkingDir ?? '/';
    // Docker keeps an absolute WORKDIR as written (`/tmp/` stays `/tmp/`) and joins a relative
    // one to the current directory, cleaned (Go's filepath.Join).
    const workdir = expanded.startsWith('/')
      ? expanded
      : posix.resolve('/', current === '' ? '/' : current, expanded);
    const directory = posix.resolve(workdir);
    this.state = withConfig(this.state, { WorkingDir: workdir });
    if (directory === '/') return this.metadata(step, `WORKDIR ${workdir}`);
    // The classic builder creates the directory (owned by root) and keeps a layer only when that
    // changed something: an existing directory gives an empty history entry.
    return this.filesystemStep(step, {
      components: [{ name: 'workdir', value: workdir }],
      createdBy: `WORKDIR ${workdir}`,
      execute: async (rootfs) => {
        await mkdirInRoot(rootfs, directory);
      },
    });
  }

  private async filesystemStep(
    step: StepRef,
    actionPromise: StepAction | Promise<StepAction>,
  ): Promise<StepOutcome> {
    const action = await actionPromise;
    const components: KeyComponent[] = [
      { name: PARENT_KEY, value: this.key },
      { name: LAYERS_BELOW, value: chainId(this.state.layers.map((layer) => layer.diffId)) },
      // The variant too: arm/v6 and arm/v7 layers differ (normalised: arm64 has none, amd64 none).
      { name: 'platform', value: formatPlatform(this.state.platform) },
      { name: 'instruction', value: action.instruction ?? action.createdBy },
      ...action.components,
      ...compressionComponents(compressionName(this.build.compression)),
    ];
    const key = cacheKey(components);
    const stepId = `${step.stage}/${step.index}`;
    this.build.current.set(stepId, {
      key: key.digest,
      components,
      ...(action.files === undefined ? {} : { files: action.files }),
      ...(action.mountFiles === undefined ? {} : { mountFiles: action.mountFiles }),
    });
    const useCache = !this.build.ignoreCache(step.stage);
    let entry = useCache ? await this.build.cache.get(key.digest) : undefined;
    let source = 'local';
    if (entry === undefined && useCache && this.build.shared !== undefined) {
      const shared = await this.build.shared.lookup(key.digest, this.build.cache, this.build.signal);
      if (shared !== undefined) {
        entry = shared.entry;
        source = shared.source;
      }
    }
    const previous = this.build.previous?.steps[stepId];
    {
      const reasons =
        entry !== undefined
          ? []
          : explainMiss(previous, this.build.current.get(stepId)!, this.previousStepMissed, useCache);
      this.build.emit({
        kind: 'cache',
        step,
        key: key.digest,
        hit: entry !== undefined,
        ...(entry !== undefined ? { source } : {}),
        components: components.map((component) => ({ name: component.name, value: component.value })),
        reasons,
      });
    }
    this.key = key.digest;
    if (entry !== undefined) {
      this.build.shared?.record(entry);
      if (this.build.sourceDateEpoch === undefined) this.created = entry.created;
      if (entry.layer === null) this.state = withEmptyHistory(this.state, entry.createdBy, this.created);
      else this.state = withLayer(this.state, entry.layer, entry.createdBy, this.created);
      return 'cached';
    }
    this.previousStepMissed = `step ${step.index} missed`;
    this.created = this.build.created;

    const rootfs = await this.rootfs.sync(this.state.layers, this.build.signal);
    await this.rootfs.prepare(this.build.signal);
    await action.execute(rootfs);
    // Read before the commit: the overlay snapshotter unmounts the step's view when it commits.
    const unchanged = action.unchangedLayer === undefined ? [] : await action.unchangedLayer(rootfs);
    let diff = await this.rootfs.commit(this.build.signal);
    if (isEmptyDiff(diff) && unchanged.length > 0) diff = { ...diff, changes: unchanged };
    let layer: LayerRef | null = null;
    if (isEmptyDiff(diff)) {
      this.state = withEmptyHistory(this.state, action.createdBy, this.build.created);
    } else {
      const written = await writeLayer(diff, this.build.blobs, {
        ...(ROOTLESS_OWNER === undefined ? {} : { mapOwner: ROOTLESS_OWNER }),
        ...(this.build.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: this.build.sourceDateEpoch }),
        ...(this.build.signal ? { signal: this.build.signal } : {}),
        compression: this.build.compression,
      });
      layer = { descriptor: written.descriptor, diffId: written.diffId };
      this.state = withLayer(this.state, layer, action.createdBy, this.build.created);
      await this.rootfs.recordLayerApplied(layer, undoRecord(diff));
    }
    const newEntry = {
      key: key.digest,
      layer,
      createdBy: action.createdBy,
      instruction: step.instruction.split('\n')[0]!.slice(0, 200),
      created: this.build.created ?? new Date().toISOString(),
    };
    await this.build.cache.put(newEntry);
    this.build.shared?.record(newEntry);
    return layer === null
      ? 'none'
      : { digest: layer.descriptor.digest, size: layer.descriptor.size, entries: diff.changes.length };
  }
}

type HealthNumber = 'Interval' | 'Timeout' | 'StartPeriod' | 'StartInterval' | 'Retries';

/** `{ [field]: value }` from the new healthcheck when set (non-zero), else from the one before. */
function pickSet(
  field: HealthNumber,
  health: HealthConfig,
  before: HealthConfig | undefined,
): Partial<Record<HealthNumber, number>> {
  const value = health[field] || before?.[field];
  return value ? { [field]: value } : {};
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
