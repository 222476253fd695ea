import type { LayerRef } from '../oci/image.js';
import type { ContainerConfig, History, Platform } from '../oci/types.js';

/**
 * The image a stage is building, as plain immutable data: every instruction maps one state to
 * the next (go-containerregistry's `mutate` lesson). Layers are already in the blob store; this
 * only records their descriptors and diff_ids, and the history and config that go with them.
 */
export interface ImageState {
  readonly platform: Platform;
  readonly config: ContainerConfig;
  readonly author?: string;
  readonly layers: readonly LayerRef[];
  readonly history: readonly History[];
}

/** FROM scratch: BuildKit's empty image has WorkingDir "/" (dockerfile2llb emptyImage). */
export function scratchState(platform: Platform): ImageState {
  return { platform, config: { WorkingDir: '/' }, layers: [], history: [] };
}

/** The PATH both Docker builders give an image whose base sets none (Linux). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * FROM: a base without PATH in its Env (scratch, imported or minimal images) gets Docker's
 * default appended to the config Env, so ENV/ARG expansion, RUN and the final image see it.
 */
export function withDefaultPath(state: ImageState): ImageState {
  if (getEnv(state.config.Env, 'PATH') !== undefined) return state;
  return withConfig(state, { Env: [...(state.config.Env ?? []), `PATH=${DEFAULT_PATH}`] });
}

/** A change to the config: the fields to set, with `undefined` for a field to remove. */
export type ConfigPatch = { readonly [Field in keyof ContainerConfig]?: ContainerConfig[Field] | undefined };

/** Returns a state whose config has `patch` applied (fields set to undefined are removed). */
export function withConfig(state: ImageState, patch: ConfigPatch): ImageState {
  const merged = Object.entries({ ...state.config, ...patch }).filter(([, value]) => value !== undefined);
  return { ...state, config: Object.fromEntries(merged) };
}

/** Records a metadata-only instruction: a history entry with `empty_layer: true`. */
export function withEmptyHistory(
  state: ImageState,
  createdBy: string,
  created: string | undefined,
): ImageState {
  return { ...state, history: [...state.history, historyEntry(createdBy, created, true)] };
}

/** Records a filesystem instruction that produced `layer`. */
export function withLayer(
  state: ImageState,
  layer: LayerRef,
  createdBy: string,
  created: string | undefined,
): ImageState {
  return {
    ...state,
    layers: [...state.layers, layer],
    history: [...state.history, historyEntry(createdBy, created, false)],
  };
}

const HISTORY_COMMENT = 'stratum';

export function historyEntry(createdBy: string, created: string | undefined, emptyLayer: boolean): History {
  return {
    ...(created === undefined ? {} : { created }),
    created_by: createdBy,
    comment: HISTORY_COMMENT,
    ...(emptyLayer ? { empty_layer: true } : {}),
  };
}

export function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

export function envValue(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? '' : entry.slice(eq + 1);
}

/** Looks a name up in a `KEY=VALUE` list. */
export function getEnv(env: readonly string[] | undefined, key: string): string | undefined {
  const entry = env?.find((candidate) => envKey(candidate) === key);
  return entry === undefined ? undefined : envValue(entry);
}
