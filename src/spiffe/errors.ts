/**
 * Lives in src/spiffe because the SPIFFE value types raise it and import nothing else of
 * Sigil; src/common/errors.ts re-exports it for everyone else.
 *
 * The one error type of Sigil. `code` is stable and mapped to a gRPC status at the
 * edge (src/grpc/status.ts); `reason` narrows it for callers and tests that need the
 * exact defect (e.g. which X509-SVID rule failed). `message` is safe to show to a
 * client; the internal `cause` is only ever logged.
 */

/** Every error code Sigil raises. Adding one without a status row does not compile. */
export type ErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_SPIFFE_ID'
  | 'ERR_INVALID_X509_SVID'
  | 'ERR_INVALID_JWT_SVID'
  | 'ERR_INVALID_BUNDLE'
  | 'ERR_NOT_FOUND'
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_PERMISSION_DENIED'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_NO_IDENTITY'
  | 'ERR_ATTESTATION_FAILED'
  | 'ERR_FAILED_PRECONDITION'
  | 'ERR_UNAVAILABLE'
  | 'ERR_DEADLINE_EXCEEDED'
  | 'ERR_CANCELLED'
  | 'ERR_CONFIG_INVALID'
  | 'ERR_INTERNAL';

/** Options of a SigilError beyond its code and message. */
export interface SigilErrorOptions {
  /** Fine-grained, stable defect name (e.g. `leaf-ca-true`); tests assert it. */
  readonly reason?: string;
  /** The internal cause; logged, never sent to a client. */
  readonly cause?: unknown;
}

/** The error class of Sigil: a stable `code`, an optional `reason`, a client-safe message. */
export class SigilError extends Error {
  readonly code: ErrorCode;
  readonly reason: string | undefined;

  constructor(code: ErrorCode, message: string, options: SigilErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SigilError';
    this.code = code;
    this.reason = options.reason;
  }
}

/** True when `err` is a SigilError, optionally with the given code. */
export function isSigilError(err: unknown, code?: ErrorCode): err is SigilError {
  return err instanceof SigilError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a SigilError, keeping SigilErrors as they are. */
export function toSigilError(err: unknown, fallbackMessage = 'internal error'): SigilError {
  if (err instanceof SigilError) return err;
  return new SigilError('ERR_INTERNAL', fallbackMessage, { cause: err });
}
