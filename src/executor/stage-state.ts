import type { ContainerConfig, History } from '../oci/types.js';
import { envKey, historyEntry, type ConfigPatch, type ImageState } from './image-state.js';

/** The config fields that hold many entries and grow one instruction at a time. */
type MapField = 'Labels' | 'ExposedPorts' | 'Volumes';

/** What one metadata instruction changes, as data (see metadata.ts). */
export interface ConfigChange {
  /** Fields replaced whole; `undefined` removes one. */
  readonly configPatch: ConfigPatch;
  /** ENV pairs in order: a name already set keeps its place, a new one is appended. */
  readonly env?: readonly (readonly [string, string])[];
  /** Entries merged into a map field (a key already there keeps its place). */
  readonly entries?: { readonly [Field in MapField]?: NonNullable<ContainerConfig[Field]> };
  /** ONBUILD: one trigger appended. */
  readonly onBuild?: string;
}

/**
 * The image a stage is building, while its instructions run. ImageState is immutable, so each
 * metadata step copying the Env list, the labels and the history made a run of N ENV lines cost
 * O(N²) (O(N³) with the GC it caused; 32,000 lines took 98 s). Here those grow in place, each
 * step costing only its own size; `state` copies them once when a filesystem step or the end of
 * the stage needs an ImageState, and the first change after that copies before writing
 * (copy-on-write), so a state handed out never changes.
 */
export class StageState {
  private base!: ImageState;
  private config!: Record<string, unknown>;
  private env!: string[];
  /** Env name → index of its first entry (what getEnv/setEnv find). */
  private envIndex!: Map<string, number>;
  private history!: History[];
  /** Fields (and 'Env', 'history') whose arrays or objects the last `state` handed out. */
  private readonly shared = new Set<string>();
  private snapshot: ImageState | undefined;

  constructor(state: ImageState) {
    this.reset(state);
  }

  /** Starts over from `state` (after a filesystem step, which builds on ImageState itself). */
  reset(state: ImageState): void {
    this.base = state;
    this.config = { ...state.config };
    this.env = [...(state.config.Env ?? [])];
    this.envIndex = new Map();
    for (const [index, entry] of this.env.entries()) {
      const key = envKey(entry);
      if (!this.envIndex.has(key)) this.envIndex.set(key, index);
    }
    this.history = [...state.history];
    this.shared.clear();
    // The config's nested objects are the given state's: copy before the first write.
    for (const field of ['Labels', 'ExposedPorts', 'Volumes', 'OnBuild']) this.shared.add(field);
    this.snapshot = state;
  }

  get state(): ImageState {
    if (this.snapshot !== undefined) return this.snapshot;
    const hadEnv = this.base.config.Env !== undefined || this.env.length > 0;
    const fields = Object.entries(hadEnv ? { ...this.config, Env: this.env } : this.config);
    const config = Object.fromEntries(fields.filter(([, value]) => value !== undefined)) as ContainerConfig;
    this.snapshot = { ...this.base, config, history: this.history };
    for (const field of ['Env', 'history', 'Labels', 'ExposedPorts', 'Volumes', 'OnBuild'])
      this.shared.add(field);
    return this.snapshot;
  }

  /** The config's fields other than Env, for a metadata instruction to read (not to keep). */
  get scalarConfig(): Readonly<Omit<ContainerConfig, 'Env'>> {
    return this.config;
  }

  getEnv(name: string): string | undefined {
    const index = this.envIndex.get(name);
    if (index === undefined) return undefined;
    const entry = this.env[index]!;
    const eq = entry.indexOf('=');
    return eq < 0 ? '' : entry.slice(eq + 1);
  }

  apply(change: ConfigChange): void {
    this.snapshot = undefined;
    for (const [field, value] of Object.entries(change.configPatch)) {
      if (field === 'Env') this.replaceEnv((value as readonly string[] | undefined) ?? []);
      else {
        this.config[field] = value;
        this.shared.delete(field);
      }
    }
    if (change.env !== undefined && change.env.length > 0) {
      this.own('Env');
      for (const [key, value] of change.env) {
        const index = this.envIndex.get(key);
        if (index === undefined) {
          this.envIndex.set(key, this.env.length);
          this.env.push(`${key}=${value}`);
        } else this.env[index] = `${key}=${value}`;
      }
    }
    for (const [field, entries] of Object.entries(change.entries ?? {})) {
      this.own(field);
      this.config[field] = Object.assign(this.config[field] ?? {}, entries);
    }
    if (change.onBuild !== undefined) {
      this.own('OnBuild');
      const triggers = this.config['OnBuild'] as string[] | null | undefined;
      if (triggers === undefined || triggers === null) this.config['OnBuild'] = [change.onBuild];
      else triggers.push(change.onBuild);
    }
  }

  setAuthor(author: string): void {
    this.snapshot = undefined;
    this.base = { ...this.base, author };
  }

  /** Records a metadata-only instruction: a history entry with `empty_layer: true`. */
  addEmptyHistory(createdBy: string, created: string | undefined): void {
    this.snapshot = undefined;
    this.own('history');
    this.history.push(historyEntry(createdBy, created, true));
  }

  private replaceEnv(env: readonly string[]): void {
    this.reset({ ...this.state, config: { ...this.state.config, Env: env } });
    this.snapshot = undefined;
  }

  /** Copies a field the last snapshot shares before it is written in place. */
  private own(field: string): void {
    if (!this.shared.delete(field)) return;
    if (field === 'Env') this.env = [...this.env];
    else if (field === 'history') this.history = [...this.history];
    else {
      const value = this.config[field];
      if (Array.isArray(value)) this.config[field] = [...(value as readonly unknown[])];
      else if (typeof value === 'object' && value !== null) this.config[field] = { ...value };
    }
  }
}
