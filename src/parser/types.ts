/**
 * The parser's output: plain readonly data. Arguments are kept exactly as written (no
 * variable expansion); the build engine expands the instructions in EXPANDING_INSTRUCTIONS
 * with expandWord / expandWords at build time.
 */

/** 1-based lines and columns; a column counts UTF-16 code units, as editors do. */
export interface SourceRange {
  readonly line: number;
  readonly column: number;
  readonly endLine: number;
}

export interface Diagnostic {
  readonly severity: 'error' | 'warning';
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly endLine?: number;
  readonly message: string;
  /** A likely fix, e.g. the instruction or flag the user probably meant. */
  readonly suggestion?: string;
  /** BuildKit's check name for warnings (e.g. NoEmptyContinuation). */
  readonly rule?: string;
}

/** A parser directive from the top of the file (`# syntax=`, `# escape=`, `# check=`). */
export interface Directive {
  readonly name: 'syntax' | 'escape' | 'check';
  readonly value: string;
  readonly line: number;
}

export interface Heredoc {
  /** The delimiter word, quotes removed (`EOF` for `<<"EOF"`). */
  readonly name: string;
  /** `5<<EOF` gives 5; 0 when no number is written. */
  readonly fileDescriptor: number;
  /** False when any part of the delimiter was quoted: then the body is not expanded. */
  readonly expand: boolean;
  /** `<<-`: leading tabs are stripped from the body lines (and the delimiter line). */
  readonly chomp: boolean;
  /** The body as written, each line with its line ending, without the delimiter line. */
  readonly content: string;
}

/**
 * BuildKit's parse node for one instruction: the keyword as written, the builder flags
 * (`--x=y`, quotes removed), the argument values the line parser produced, and whether the
 * arguments came from a JSON array. ONBUILD carries its trigger as `child`.
 */
export interface AstNode {
  readonly keyword: string;
  readonly flags: readonly string[];
  readonly args: readonly string[];
  readonly json: boolean;
  readonly child?: AstNode;
  readonly heredocs: readonly Heredoc[];
  /** The logical line: continuations joined, comment lines removed. */
  readonly original: string;
  readonly location: SourceRange;
  /**
   * The comment lines right above the instruction (`#` and surrounding space removed; BuildKit's
   * PrevComment). Absent when there are none.
   */
  readonly comments?: readonly string[];
}

export interface AstResult {
  readonly file: string;
  readonly nodes: readonly AstNode[];
  readonly directives: readonly Directive[];
  readonly escapeChar: '\\' | '`';
  readonly diagnostics: readonly Diagnostic[];
  readonly ok: boolean;
}

export type CommandForm = 'shell' | 'exec';

export interface InstructionBase {
  /** The keyword as written (case kept). */
  readonly keyword: string;
  readonly location: SourceRange;
  /** The logical line as BuildKit stores it (continuations joined, comment lines dropped). */
  readonly original: string;
  /** The builder flags as written, quotes removed (`--mount=type=cache,target=/x`). */
  readonly flags: readonly string[];
  /** BuildKit's argument values for this instruction (what the AST dump prints). */
  readonly args: readonly string[];
  /** The comment lines right above it (see AstNode.comments). */
  readonly comments?: readonly string[];
}

export interface FromInstruction extends InstructionBase {
  readonly kind: 'from';
  readonly image: string;
  /** Lower-cased, as BuildKit matches stage names case-insensitively. */
  readonly stageName?: string;
  readonly platform?: string;
}

export type MountSpec =
  | {
      readonly type: 'bind';
      readonly target: string;
      readonly source?: string;
      readonly from?: string;
      readonly readOnly: boolean;
    }
  | {
      readonly type: 'cache';
      readonly target: string;
      readonly id?: string;
      readonly source?: string;
      readonly from?: string;
      readonly readOnly: boolean;
      readonly sharing: 'shared' | 'private' | 'locked';
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
    }
  | {
      readonly type: 'tmpfs';
      readonly target: string;
      /** Bytes; undefined for no limit. */
      readonly size?: number;
      readonly readOnly: boolean;
    }
  | {
      readonly type: 'secret';
      readonly id?: string;
      readonly target?: string;
      /** Expose the secret as this environment variable. */
      readonly env?: string;
      readonly required: boolean;
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
      readonly readOnly: boolean;
    }
  | {
      readonly type: 'ssh';
      readonly id?: string;
      readonly target?: string;
      readonly required: boolean;
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
      readonly readOnly: boolean;
    };

export interface RunInstruction extends InstructionBase {
  readonly kind: 'run';
  readonly form: CommandForm;
  /** Shell form: one string (run with the SHELL); exec form: the argv. */
  readonly command: readonly string[];
  readonly mounts: readonly MountSpec[];
  readonly network: 'default' | 'none' | 'host';
  readonly security: 'sandbox' | 'insecure';
  readonly heredocs: readonly Heredoc[];
}

export interface CmdInstruction extends InstructionBase {
  readonly kind: 'cmd';
  readonly form: CommandForm;
  readonly command: readonly string[];
}

export interface EntrypointInstruction extends InstructionBase {
  readonly kind: 'entrypoint';
  readonly form: CommandForm;
  readonly command: readonly string[];
}

export interface ShellInstruction extends InstructionBase {
  readonly kind: 'shell';
  readonly shell: readonly string[];
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** The old `ENV key value` form (no `=`). */
  readonly legacy: boolean;
}

export interface EnvInstruction extends InstructionBase {
  readonly kind: 'env';
  readonly pairs: readonly KeyValue[];
}

export interface LabelInstruction extends InstructionBase {
  readonly kind: 'label';
  readonly pairs: readonly KeyValue[];
}

export interface ArgDeclaration {
  readonly name: string;
  /** Undefined when declared without `=`. */
  readonly defaultValue?: string;
}

export interface ArgInstruction extends InstructionBase {
  readonly kind: 'arg';
  readonly declarations: readonly ArgDeclaration[];
}

export interface ExposeInstruction extends InstructionBase {
  readonly kind: 'expose';
  readonly ports: readonly string[];
}

export interface VolumeInstruction extends InstructionBase {
  readonly kind: 'volume';
  readonly form: CommandForm;
  readonly volumes: readonly string[];
}

export interface UserInstruction extends InstructionBase {
  readonly kind: 'user';
  readonly user: string;
}

export interface WorkdirInstruction extends InstructionBase {
  readonly kind: 'workdir';
  readonly path: string;
}

/** A COPY/ADD source given inline as a heredoc (`COPY <<EOF /dest`). */
export interface InlineSource extends Heredoc {
  /** The file name the content gets: the delimiter word. */
  readonly path: string;
}

export interface CopyInstruction extends InstructionBase {
  readonly kind: 'copy';
  readonly form: CommandForm;
  /** Source paths/patterns (not heredocs). */
  readonly sources: readonly string[];
  readonly inlineSources: readonly InlineSource[];
  readonly destination: string;
  readonly from?: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly parents: boolean;
  readonly exclude: readonly string[];
}

export interface AddInstruction extends InstructionBase {
  readonly kind: 'add';
  readonly form: CommandForm;
  readonly sources: readonly string[];
  readonly inlineSources: readonly InlineSource[];
  readonly destination: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly keepGitDir: boolean;
  readonly checksum?: string;
  /** `--unpack`: undefined = default behaviour (extract local archives only). */
  readonly unpack?: boolean;
  readonly exclude: readonly string[];
}

export interface StopsignalInstruction extends InstructionBase {
  readonly kind: 'stopsignal';
  readonly signal: string;
}

export interface HealthcheckInstruction extends InstructionBase {
  readonly kind: 'healthcheck';
  /** As Docker stores it in the config: ["NONE"], ["CMD", ...argv] or ["CMD-SHELL", command]. */
  readonly test: readonly string[];
  /** Nanoseconds; 0 means "not set" (inherit / Docker's default). */
  readonly interval: number;
  readonly timeout: number;
  readonly startPeriod: number;
  readonly startInterval: number;
  /** 0 means "not set". */
  readonly retries: number;
}

export interface OnbuildInstruction extends InstructionBase {
  readonly kind: 'onbuild';
  readonly trigger: Instruction;
  /** The trigger text as Docker stores it in the config's OnBuild list. */
  readonly expression: string;
}

export interface MaintainerInstruction extends InstructionBase {
  readonly kind: 'maintainer';
  readonly maintainer: string;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | ShellInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | ExposeInstruction
  | VolumeInstruction
  | UserInstruction
  | WorkdirInstruction
  | CopyInstruction
  | AddInstruction
  | StopsignalInstruction
  | HealthcheckInstruction
  | OnbuildInstruction
  | MaintainerInstruction;

export type InstructionKind = Instruction['kind'];

export interface Stage {
  readonly index: number;
  /** The `AS name`, lower-cased; undefined for an unnamed stage. */
  readonly name?: string;
  readonly from: FromInstruction;
  /** The instructions after FROM, in order. */
  readonly instructions: readonly Instruction[];
}

export interface ParseResult {
  readonly file: string;
  readonly directives: readonly Directive[];
  readonly escapeChar: '\\' | '`';
  /** ARG instructions before the first FROM: visible only to FROM lines. */
  readonly metaArgs: readonly ArgInstruction[];
  readonly stages: readonly Stage[];
  readonly diagnostics: readonly Diagnostic[];
  /** True when no diagnostic is an error. */
  readonly ok: boolean;
}

export interface ParseOptions {
  /** Name used in diagnostics; default `Dockerfile`. */
  readonly file?: string;
}
