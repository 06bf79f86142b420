/**
 * The one table from Sigil error codes to gRPC status codes, and the conversion used by
 * every gRPC handler at the edge. Unknown errors become INTERNAL with a generic message;
 * their cause is logged by the caller, never sent.
 */
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { SigilError, type ErrorCode } from '../common/errors.js';

/** Exhaustive: a new ErrorCode without a row here does not compile. */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, Status>> = {
  ERR_INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  ERR_INVALID_SPIFFE_ID: Status.INVALID_ARGUMENT,
  ERR_INVALID_X509_SVID: Status.INVALID_ARGUMENT,
  ERR_INVALID_JWT_SVID: Status.INVALID_ARGUMENT,
  ERR_INVALID_BUNDLE: Status.INVALID_ARGUMENT,
  ERR_NOT_FOUND: Status.NOT_FOUND,
  ERR_ALREADY_EXISTS: Status.ALREADY_EXISTS,
  ERR_PERMISSION_DENIED: Status.PERMISSION_DENIED,
  ERR_UNAUTHENTICATED: Status.UNAUTHENTICATED,
  ERR_NO_IDENTITY: Status.PERMISSION_DENIED,
  ERR_ATTESTATION_FAILED: Status.PERMISSION_DENIED,
  ERR_FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  ERR_UNAVAILABLE: Status.UNAVAILABLE,
  ERR_DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
  ERR_CANCELLED: Status.CANCELLED,
  ERR_CONFIG_INVALID: Status.INVALID_ARGUMENT,
  ERR_INTERNAL: Status.INTERNAL,
};

/** Metadata key that carries the Sigil error code to Sigil's own clients. */
export const ERROR_CODE_METADATA_KEY = 'sigil-error-code';
/** Metadata key that carries the error's `reason` (e.g. `agent-evicted`) to Sigil's own clients. */
export const ERROR_REASON_METADATA_KEY = 'sigil-error-reason';
const REASON_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Converts anything thrown by a handler into a gRPC ServiceError with a client-safe message. */
export function toServiceError(err: unknown): ServiceError {
  const metadata = new Metadata();
  if (err instanceof SigilError) {
    metadata.set(ERROR_CODE_METADATA_KEY, err.code);
    if (err.reason !== undefined && REASON_RE.test(err.reason)) metadata.set(ERROR_REASON_METADATA_KEY, err.reason);
    const e = new Error(err.message) as ServiceError;
    e.code = STATUS_BY_CODE[err.code];
    e.details = err.message;
    e.metadata = metadata;
    return e;
  }
  metadata.set(ERROR_CODE_METADATA_KEY, 'ERR_INTERNAL');
  const e = new Error('internal error') as ServiceError;
  e.code = Status.INTERNAL;
  e.details = 'internal error';
  e.metadata = metadata;
  return e;
}

/** Converts a gRPC error received by a Sigil client back into a SigilError. */
export function fromServiceError(err: unknown): SigilError {
  if (err instanceof SigilError) return err;
  const se = err as Partial<ServiceError> | undefined;
  const carried = se?.metadata?.get(ERROR_CODE_METADATA_KEY)[0];
  const details = typeof se?.details === 'string' && se.details.length > 0 ? se.details : 'request failed';
  if (typeof carried === 'string' && carried in STATUS_BY_CODE) {
    const reason = se?.metadata?.get(ERROR_REASON_METADATA_KEY)[0];
    return new SigilError(carried as ErrorCode, details, {
      cause: err,
      ...(typeof reason === 'string' && REASON_RE.test(reason) ? { reason } : {}),
    });
  }
  const byStatus: Partial<Record<number, ErrorCode>> = {
    [Status.INVALID_ARGUMENT]: 'ERR_INVALID_ARGUMENT',
    [Status.NOT_FOUND]: 'ERR_NOT_FOUND',
    [Status.ALREADY_EXISTS]: 'ERR_ALREADY_EXISTS',
    [Status.PERMISSION_DENIED]: 'ERR_PERMISSION_DENIED',
    [Status.UNAUTHENTICATED]: 'ERR_UNAUTHENTICATED',
    [Status.FAILED_PRECONDITION]: 'ERR_FAILED_PRECONDITION',
    [Status.UNAVAILABLE]: 'ERR_UNAVAILABLE',
    [Status.DEADLINE_EXCEEDED]: 'ERR_DEADLINE_EXCEEDED',
    [Status.CANCELLED]: 'ERR_CANCELLED',
  };
  const code = (se?.code === undefined ? undefined : byStatus[se.code]) ?? 'ERR_INTERNAL';
  return new SigilError(code, details, { cause: err });
}
