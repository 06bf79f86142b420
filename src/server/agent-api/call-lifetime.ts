/**
 * How long a unary call's caller still waits: an AbortSignal that fires when the call is
 * cancelled or its deadline passes, so work for a caller that has gone stops there (issue 20:
 * a server that kept signing for dead calls signed four times what was needed). gRPC deadlines
 * are wall-clock instants set by the client, so the timer here is real time, not the
 * components' Clock; it is cleared when the call is answered and never keeps a process alive.
 */
import type { Deadline } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';

/** A call's lifetime as seen by its handler. */
export interface CallLifetime {
  /** Fires with ERR_CANCELLED (client cancelled) or ERR_DEADLINE_EXCEEDED (deadline passed). */
  readonly signal: AbortSignal;
  /** The call's deadline in ms since the epoch, or undefined when it has none. */
  readonly deadlineMs: number | undefined;
  /** Stops watching (the call was answered). */
  release(): void;
}

/** The part of a grpc-js server call (unary or stream) watched here. */
export interface WatchedCall {
  getDeadline(): Deadline;
  on(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

/** Watches `call` (unary or stream) for cancellation and for its deadline. */
export function callLifetime(call: WatchedCall): CallLifetime {
  const ctl = new AbortController();
  const raw = call.getDeadline();
  const at = raw instanceof Date ? raw.getTime() : raw;
  const deadlineMs = Number.isFinite(at) ? at : undefined;
  const onCancelled = (): void => {
    if (!ctl.signal.aborted) ctl.abort(new SigilError('ERR_CANCELLED', 'the caller cancelled the call', { reason: 'caller-cancelled' }));
  };
  call.on('cancelled', onCancelled);
  let timer: NodeJS.Timeout | undefined;
  if (deadlineMs !== undefined) {
    timer = setTimeout(() => {
      if (!ctl.signal.aborted) ctl.abort(new SigilError('ERR_DEADLINE_EXCEEDED', 'the call passed its deadline', { reason: 'deadline-passed' }));
    }, Math.max(0, Math.min(deadlineMs - Date.now(), 2_147_483_647)));
    timer.unref();
  }
  return {
    signal: ctl.signal,
    deadlineMs,
    release: () => {
      if (timer !== undefined) clearTimeout(timer);
      call.removeListener('cancelled', onCancelled);
    },
  };
}

/** The audit reason for work done for a caller that had gone: `caller-cancelled`, `deadline-passed`. */
export function callerGoneReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof SigilError && r.reason !== undefined ? `not-delivered:${r.reason}` : 'not-delivered';
}
