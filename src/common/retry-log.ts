/**
 * The log line of a retry. A daemon that waits (an agent whose server is down, a server whose
 * datastore is down) logs one line per failed attempt for as long as the outage lasts, so that
 * line says what failed and when the next try is, and nothing more: the error's code, reason and
 * message, the gRPC status or the system/SQLSTATE code of its cause, and `retryInMs`. A stack
 * trace says nothing about an expected outage and would turn each attempt into thirty lines; it
 * is logged only for an unexpected failure (not a SigilError, or ERR_INTERNAL), and only at
 * debug level, on a line of its own.
 */
import { isSigilError } from './errors.js';
import type { Logger } from './logger.js';

/** Longest message copied into a retry line. */
const MAX_MESSAGE = 300;

/** The gRPC status names by number (the gRPC spec's status codes), for causes that are gRPC errors. */
const GRPC_STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** What a retry line says about the failure. */
export interface RetryErrorFields {
  /** The Sigil error code, or the cause's own string code (`ECONNREFUSED`, a SQLSTATE). */
  code?: string;
  reason?: string;
  /** The error's message. */
  error: string;
  /** The gRPC status name when the failure was a gRPC call's. */
  grpcStatus?: string;
  /** `code: message` of the innermost cause that is not a SigilError (a socket or PostgreSQL error), when it adds something. */
  cause?: string;
}

function clip(text: string): string {
  return text.length <= MAX_MESSAGE ? text : `${text.slice(0, MAX_MESSAGE)}…`;
}

/** An error's message; an AggregateError (one connect error per address) without one gives its first inner message. */
function messageOf(err: Error): string {
  if (err.message !== '') return err.message;
  const inner = (err as { errors?: unknown }).errors;
  if (Array.isArray(inner) && inner[0] instanceof Error) return inner[0].message;
  return err.name;
}

/** True for a gRPC ServiceError (a numeric status `code` and a `details` string). */
function grpcStatusOf(err: Error): string | undefined {
  const { code, details } = err as { code?: unknown; details?: unknown };
  if (typeof code !== 'number' || typeof details !== 'string') return undefined;
  return GRPC_STATUS_NAMES[code] ?? String(code);
}

/** The fields of a retry line for `err`: no stack, no enumerable properties beyond these. */
export function retryErrorFields(err: unknown): RetryErrorFields {
  if (!(err instanceof Error)) return { error: clip(String(err)) };
  const out: RetryErrorFields = { error: clip(messageOf(err)) };
  const { code, reason } = err as { code?: unknown; reason?: unknown };
  if (typeof code === 'string') out.code = code;
  if (typeof reason === 'string') out.reason = reason;
  // Walk the causes (bounded): the first gRPC error names the status, the innermost plain error the system cause.
  let cause: unknown = err;
  let inner: Error | undefined;
  for (let depth = 0; depth < 4 && cause instanceof Error; depth++) {
    const status = grpcStatusOf(cause);
    if (status !== undefined) {
      out.grpcStatus ??= status;
    } else if (!isSigilError(cause)) {
      inner = cause;
    }
    cause = cause.cause;
  }
  if (inner !== undefined && inner !== err) {
    const innerCode = (inner as { code?: unknown }).code;
    const text = clip(messageOf(inner));
    const described = typeof innerCode === 'string' && !text.includes(innerCode) ? `${innerCode}: ${text}` : text;
    if (described !== out.error) out.cause = described;
  }
  return out;
}

/** True for a failure nobody planned for: not a SigilError, or one with ERR_INTERNAL. */
function unexpected(err: unknown): boolean {
  return !isSigilError(err) || err.code === 'ERR_INTERNAL';
}

/**
 * Logs one retry line, `msg` with the failure's fields and `fields` (e.g. `retryInMs`), at
 * `level` (warn unless told); for an unexpected failure the stack follows on a debug line.
 */
export function logRetry(logger: Logger, err: unknown, fields: Readonly<Record<string, unknown>>, msg: string, level: 'warn' | 'error' | 'info' = 'warn'): void {
  logger[level]({ ...retryErrorFields(err), ...fields }, msg);
  if (unexpected(err)) logger.debug({ err }, 'stack of the failure before the retry');
}
