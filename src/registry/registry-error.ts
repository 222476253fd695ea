import { StratumError, type ErrorCode } from '../errors.js';

/**
 * Errors from a registry: one line naming the reference, what stratum was doing, the HTTP status
 * and the registry's own error code from the distribution error body
 * (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`). Every message passes through
 * `redact`, so a secret that a registry echoes back cannot reach a terminal or a log.
 */

export interface DistributionError {
  readonly code: string;
  readonly message?: string;
}

/** Secrets a client has seen (passwords, tokens, Basic headers); `redact` blanks them out. */
export class Secrets {
  private readonly values = new Set<string>();

  register(secret: string | undefined): void {
    if (secret !== undefined && secret.length >= 4) this.values.add(secret);
  }

  redact(text: string): string {
    return redact(text, this);
  }

  *[Symbol.iterator](): IterableIterator<string> {
    yield* this.values;
  }
}

/** One line, with the given secrets and anything shaped like an Authorization value blanked out. */
export function redact(text: string, secrets: Iterable<string> = []): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('<redacted>');
  }
  // Anything shaped like an Authorization value is redacted even if we never saw it.
  out = out.replace(/\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}/g, '$1 <redacted>');
  return out.replace(/[\r\n]+/g, ' ').trim();
}

export function parseDistributionErrors(body: string): DistributionError[] {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null || !('errors' in parsed)) return [];
    const errors = parsed.errors;
    if (!Array.isArray(errors)) return [];
    const out: DistributionError[] = [];
    for (const entry of errors as unknown[]) {
      if (typeof entry !== 'object' || entry === null) continue;
      const code = 'code' in entry && typeof entry.code === 'string' ? entry.code : undefined;
      const message = 'message' in entry && typeof entry.message === 'string' ? entry.message : undefined;
      if (code !== undefined) out.push(message !== undefined ? { code, message } : { code });
    }
    return out;
  } catch {
    return [];
  }
}

function codeForStatus(status: number, codes: readonly string[]): ErrorCode {
  if (status === 401 || status === 403 || codes.includes('UNAUTHORIZED') || codes.includes('DENIED'))
    return 'AUTH';
  if (status === 404) return 'NOT_FOUND';
  return 'REGISTRY';
}

/** Builds the one-line error for an HTTP response that was not what the operation needed. */
export function httpError(what: string, status: number, body: string, secrets?: Secrets): StratumError {
  const errors = parseDistributionErrors(body);
  const detail =
    errors.length > 0
      ? errors
          .map((error) => `${error.code}${error.message !== undefined ? ` (${error.message})` : ''}`)
          .join(', ')
      : `HTTP ${status}${statusText(status)}`;
  const message = redact(`${what}: ${errors.length > 0 ? `HTTP ${status} ` : ''}${detail}`, secrets);
  return new StratumError(
    codeForStatus(
      status,
      errors.map((error) => error.code),
    ),
    message,
  );
}

function statusText(status: number): string {
  const texts: Record<number, string> = {
    400: ' Bad Request',
    401: ' Unauthorized',
    403: ' Forbidden',
    404: ' Not Found',
    405: ' Method Not Allowed',
    408: ' Request Timeout',
    416: ' Range Not Satisfiable',
    429: ' Too Many Requests',
    500: ' Internal Server Error',
    502: ' Bad Gateway',
    503: ' Service Unavailable',
    504: ' Gateway Timeout',
  };
  return texts[status] ?? '';
}

/** A network-level failure (refused, unknown host, reset) as a one-line error. */
/** Node's codes for a certificate chain that no trusted CA signs. */
const UNTRUSTED_CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
]);
const UNTRUSTED_HINT =
  '; a registry signed by a private CA is trusted with NODE_EXTRA_CA_CERTS=CA.pem, one not to verify is named with --insecure-registry';

export function networkError(what: string, error: unknown, secrets?: Secrets): StratumError {
  const code = errorCode(error);
  const reason =
    code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? 'unknown host'
      : code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE'
          ? 'connection reset'
          : code === 'UND_ERR_HEADERS_TIMEOUT' ||
              code === 'UND_ERR_BODY_TIMEOUT' ||
              code === 'UND_ERR_CONNECT_TIMEOUT'
            ? 'timed out'
            : error instanceof Error
              ? error.message
              : String(error);
  const hint = code !== undefined && UNTRUSTED_CERTIFICATE.has(code) ? UNTRUSTED_HINT : '';
  const message = redact(`${what}: ${reason}${code !== undefined ? ` (${code})` : ''}${hint}`, secrets);
  return new StratumError('REGISTRY', message, {
    cause: error,
  });
}

/** The code of a Node or undici error, looking through `cause` (undici wraps socket errors). */
export function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    if ('code' in current && typeof current.code === 'string') {
      const code = current.code;
      // undici's generic socket code hides the more telling errno below it.
      if (code !== 'UND_ERR_SOCKET' || !('cause' in current)) return code;
    }
    current = 'cause' in current ? current.cause : undefined;
  }
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string')
    return error.code;
  return undefined;
}
