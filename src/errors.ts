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

export class StratumError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StratumError';
    this.code = code;
  }
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
