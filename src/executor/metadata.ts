import { posix } from 'node:path';
import { StratumError } from '../errors.js';
import type { ContainerConfig, HealthConfig } from '../oci/types.js';
import type { Instruction } from '../parser/index.js';
import { goPlainList, goQuotedList, healthcheckCreatedBy } from './history.js';
import type { ConfigChange } from './stage-state.js';
import { formatExposedPorts } from './ports.js';

/**
 * The metadata instructions as pure functions: each takes the instruction and what it can see of
 * the stage (config, expansion) and returns the config change and the history `created_by`. The
 * stage runner applies the patch, records the history entry and rolls the key; nothing here
 * touches a filesystem or the cache.
 */

/** What a metadata instruction sees of its stage. */
export interface MetadataScope {
  /** The config's fields other than Env (ENV's values come through `expand`). */
  readonly config: Readonly<Omit<ContainerConfig, 'Env'>>;
  /** Expands one word (quotes kept as one word). */
  readonly expand: (text: string) => string;
  /** Expands words that may split into several. */
  readonly expandList: (texts: readonly string[]) => string[];
  /** `Dockerfile:LINE`, for error messages. */
  readonly where: string;
  /** Whether a CMD was set earlier in this stage (an ENTRYPOINT then keeps it). */
  readonly cmdSet: boolean;
}

/**
 * The config change as data (fields replaced, entries added), so that applying it costs the
 * size of the instruction, not of the config it adds to (see stage-state.ts).
 */
export interface MetadataChange extends ConfigChange {
  readonly createdBy: string;
  /** MAINTAINER: the image's author. */
  readonly author?: string;
}

export type MetadataInstruction = Extract<
  Instruction,
  {
    kind:
      | 'env'
      | 'label'
      | 'expose'
      | 'volume'
      | 'user'
      | 'stopsignal'
      | 'maintainer'
      | 'shell'
      | 'cmd'
      | 'entrypoint'
      | 'healthcheck'
      | 'onbuild';
  }
>;

export function metadataChange(instruction: MetadataInstruction, scope: MetadataScope): MetadataChange {
  const config = scope.config;
  switch (instruction.kind) {
    case 'env': {
      const parts: string[] = [];
      // Every pair of one ENV line sees the environment from before the line (BuildKit).
      const values = instruction.pairs.map(
        (pair) => [scope.expand(pair.key), scope.expand(pair.value)] as const,
      );
      for (const [key, value] of values) {
        if (key === '') throw new StratumError('BUILD_FAILED', `${scope.where}: ENV names can not be blank`);
        parts.push(`${key}=${value}`);
      }
      return { configPatch: {}, env: values, createdBy: `ENV ${parts.join(' ')}` };
    }
    case 'label': {
      const labels: Record<string, string> = {};
      const parts: string[] = [];
      for (const pair of instruction.pairs) {
        const key = scope.expand(pair.key);
        const value = scope.expand(pair.value);
        if (key === '')
          throw new StratumError('BUILD_FAILED', `${scope.where}: LABEL names can not be blank`);
        labels[key] = value;
        parts.push(`${key}=${value}`);
      }
      return { configPatch: {}, entries: { Labels: labels }, createdBy: `LABEL ${parts.join(' ')}` };
    }
    case 'expose': {
      const ports = formatExposedPorts(scope.expandList(instruction.ports), scope.where);
      const exposed: Record<string, Record<string, never>> = {};
      for (const port of ports) exposed[port] = {};
      const listed = [...ports]
        .sort()
        .map((port) => `${port}:{}`)
        .join(' ');
      return {
        configPatch: {},
        entries: { ExposedPorts: exposed },
        createdBy: `EXPOSE map[${listed}]`,
      };
    }
    case 'volume': {
      const volumes: Record<string, Record<string, never>> = {};
      const list =
        instruction.form === 'exec'
          ? instruction.volumes.map((volume) => scope.expand(volume))
          : scope.expandList(instruction.volumes);
      for (const volume of list) {
        if (volume.trim() === '')
          throw new StratumError(
            'BUILD_FAILED',
            `${scope.where}: VOLUME specified can not be an empty string`,
          );
        volumes[volume] = {};
      }
      return { configPatch: {}, entries: { Volumes: volumes }, createdBy: `VOLUME ${goPlainList(list)}` };
    }
    case 'user': {
      const user = scope.expand(instruction.user);
      return { configPatch: { User: user }, createdBy: `USER ${user}` };
    }
    case 'stopsignal': {
      const signal = scope.expand(instruction.signal);
      return { configPatch: { StopSignal: signal }, createdBy: `STOPSIGNAL ${signal}` };
    }
    case 'maintainer':
      return {
        configPatch: {},
        createdBy: `MAINTAINER ${instruction.maintainer}`,
        author: instruction.maintainer,
      };
    case 'shell':
      return {
        configPatch: { Shell: [...instruction.shell] },
        createdBy: `SHELL ${goPlainList(instruction.shell)}`,
      };
    case 'cmd': {
      const command = commandLine(config, instruction.form, instruction.command);
      return { configPatch: { Cmd: command }, createdBy: `CMD ${goQuotedList(command)}` };
    }
    case 'entrypoint': {
      const command = commandLine(config, instruction.form, instruction.command);
      return {
        // An ENTRYPOINT resets the CMD inherited from the base (not one set in this stage).
        configPatch: scope.cmdSet ? { Entrypoint: command } : { Entrypoint: command, Cmd: undefined },
        createdBy: `ENTRYPOINT ${goQuotedList(command)}`,
      };
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
      // BuildKit replaces the healthcheck whole: fields left unset stay unset (moby's classic
      // commit filled them from the healthcheck before, even under HEALTHCHECK NONE).
      return { configPatch: { Healthcheck: health }, createdBy: healthcheckCreatedBy(health) };
    }
    case 'onbuild':
      return {
        configPatch: {},
        onBuild: instruction.expression,
        createdBy: `ONBUILD ${instruction.expression}`,
      };
  }
}

/** What ARG declares: each name with its value (undefined: declared without one). */
export interface ArgDeclarations {
  readonly declared: readonly (readonly [string, string | undefined])[];
  readonly createdBy: string;
}

/**
 * ARG: a value given with --build-arg wins, then the default (expanded), then a meta ARG of the
 * same name. It changes no config; its values reach the keys of the steps that use them. The
 * name is expanded too (`ARG ${src}=x` with `ENV src=file3` declares file3), as BuildKit's
 * ArgCommand.Expand does for key and value.
 */
export function argDeclarations(
  instruction: Extract<Instruction, { kind: 'arg' }>,
  sources: {
    readonly buildArgs: { get(name: string): string | undefined };
    readonly metaArgs: ReadonlyMap<string, string>;
    /** Expands a default; `earlier` holds the declarations before it on the same line. */
    readonly expand: (text: string, earlier: ReadonlyMap<string, string | undefined>) => string;
  },
): ArgDeclarations {
  const declared: (readonly [string, string | undefined])[] = [];
  const earlier = new Map<string, string | undefined>();
  for (const declaration of instruction.declarations) {
    const name = declaration.name.includes('$')
      ? sources.expand(declaration.name, earlier)
      : declaration.name;
    let value: string | undefined;
    const given = sources.buildArgs.get(name);
    if (given !== undefined) value = given;
    else if (declaration.defaultValue !== undefined)
      value = sources.expand(declaration.defaultValue, earlier);
    else value = sources.metaArgs.get(name);
    earlier.set(name, value);
    declared.push([name, value]);
  }
  const parts = declared.map(([name, value]) => (value === undefined ? name : `${name}=${value}`));
  return { declared, createdBy: `ARG ${parts.join(' ')}` };
}

/**
 * WORKDIR's config side: Docker keeps an absolute WORKDIR as written (`/tmp/` stays `/tmp/`)
 * and joins a relative one to the current directory, cleaned (Go's filepath.Join). `directory`
 * is the cleaned path to create.
 */
export function workdirChange(
  config: Readonly<Omit<ContainerConfig, 'Env'>>,
  expanded: string,
): MetadataChange & { readonly workdir: string; readonly directory: string } {
  const current = config.WorkingDir ?? '/';
  const workdir = expanded.startsWith('/')
    ? expanded
    : posix.resolve('/', current === '' ? '/' : current, expanded);
  return {
    configPatch: { WorkingDir: workdir },
    createdBy: `WORKDIR ${workdir}`,
    workdir,
    directory: posix.resolve(workdir),
  };
}

/** CMD/ENTRYPOINT argv: the exec form as written, the shell form through SHELL. */
function commandLine(
  config: Readonly<Omit<ContainerConfig, 'Env'>>,
  form: 'shell' | 'exec',
  command: readonly string[],
): string[] {
  if (form === 'exec') return [...command];
  const shell = config.Shell ?? ['/bin/sh', '-c'];
  return [...shell, command.join(' ')];
}
