/**
 * The one error type stratum throws for anything a user can cause or fix. `code` is stable so
 * callers match on it; `message` is one line that names the file, line, path or reference.
 * The CLI alone maps these to exit codes: usage errors exit 2, everything else 1.
 * Every folder of src/ may import this module (it imports nothing).
 */
export type ErrorCode =
  | 'USAGE'
  | 'PARSE'
  | 'NOT_FOUND'
  | 'INVALID_IMAGE'
  | 'DIGEST_MISMATCH'
  | 'UNSUPPORTED'
  | 'UNSAFE_PATH'
  | 'BUILD_FAILED'
  | 'REGISTRY'
  | 'AUTH'
  | 'IO'
  | 'ABORTED';

/** Where in a source file (a Dockerfile) an error comes from; `text` is that line, for a caret. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  /** 1-based; 1 when only the line is known. */
  readonly column?: number;
  readonly text?: string;
}

export interface StratumErrorOptions {
  readonly cause?: unknown;
  readonly location?: SourceLocation;
  /** Outer context first (`stage 0, step 2/3`, `COPY a /b`); see wrap(). */
  readonly context?: readonly string[];
  /**
   * The last lines a failed command printed, kept out of the message: a progress display that
   * showed them already does not print them twice (the CLI prints them when nothing did).
   */
  readonly output?: readonly string[];
}

export class StratumError extends Error {
  readonly code: ErrorCode;
  /** What went wrong, without the context chain. */
  readonly detail: string;
  readonly location: SourceLocation | undefined;
  readonly context: readonly string[];
  readonly output: readonly string[] | undefined;

  /** `message` is the context chain and the detail in one line, `a: b: detail`. */
  constructor(code: ErrorCode, detail: string, options: StratumErrorOptions = {}) {
    const context = options.context ?? [];
    super(
      [...context, detail].join(': '),
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'StratumError';
    this.code = code;
    this.detail = detail;
    this.location = options.location;
    this.context = context;
    this.output = options.output;
  }
}

/**
 * Adds context to an error on its way up, as data rather than by editing its message: the
 * caller's `context` goes in front of the chain, and `location` is kept unless the error
 * already has a more precise one. A context already in the chain is not added twice. Errors
 * that are not StratumErrors (bugs, or system errors the CLI prints as they are) and aborts
 * pass through unchanged.
 */
export function wrap(
  error: unknown,
  context: string,
  options: { readonly location?: SourceLocation; readonly code?: ErrorCode } = {},
): unknown {
  if (!isStratumError(error) || error.code === 'ABORTED') return error;
  const location = error.location ?? options.location;
  // A detail that starts with the location the context names says it once, in the context.
  const prefix = location === undefined ? undefined : `${location.file}:${location.line}: `;
  const detail =
    prefix !== undefined && error.context.length === 0 && error.detail.startsWith(prefix)
      ? error.detail.slice(prefix.length)
      : error.detail;
  return new StratumError(options.code ?? error.code, detail, {
    cause: error,
    ...(location === undefined ? {} : { location }),
    ...(error.output === undefined ? {} : { output: error.output }),
    context: error.context.includes(context) ? error.context : [context, ...error.context],
  });
}

export function isStratumError(value: unknown): value is StratumError {
  return value instanceof StratumError;
}

/** Node's fs errors carry a `code` such as ENOENT; this narrows to them without `any`. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = error.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** What to show of anything thrown: an Error's message, else its string form. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A system error without the paths Node puts in its message (`EACCES: permission denied, open
 * '/cache/overlay/sessions/…/x'` → `permission denied (EACCES)`): for an error on a path of
 * stratum's own (a rootfs, an overlay session, the cache), where the caller names the user's
 * path instead. Anything else is shown as it is.
 */
export function systemErrorText(error: unknown): string {
  const code = errnoCode(error);
  const message = messageOf(error);
  const match = code === undefined ? null : /^[A-Z0-9_]+: ([^,]+)(?:, |$)/.exec(message);
  return match === null ? message : `${match[1]} (${code})`;
}

/** Errors of a full or failing disk, which name no path of their own (a write on a descriptor). */
const DISK_ERRORS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EIO: 'input/output error',
};

/**
 * A write that failed for its disk, named after the destination it was writing (`oci:/mnt/x:1:
 * no space left on device (ENOSPC)`); any other error is returned as it is.
 */
export function destinationError(destination: string, error: unknown): unknown {
  // Also one already wrapped on the way (naming a layer, not where it was going).
  let code: string | undefined;
  for (let cause = error, depth = 0; cause !== undefined && code === undefined && depth < 5; depth++) {
    code = isStratumError(cause) ? undefined : errnoCode(cause);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  const text = code === undefined ? undefined : DISK_ERRORS[code];
  if (text === undefined) return error;
  return new StratumError('IO', `${destination}: ${text} (${code})`, { cause: error });
}
