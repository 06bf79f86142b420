/**
 * How the long-running commands (`server run`, `agent run`, `helper`, `api watch`, `demo`) end, as a
 * supervisor (systemd, Kubernetes, a shell) sees them. The contract (docs/cli.md, "Exit codes
 * and signals"):
 *
 *   0      a requested stop that finished (SIGTERM or SIGINT), or the job done (`helper --once`)
 *   1      a runtime failure: the daemon could not start (a config it cannot run with, a refused
 *          attestation, a port in use) or failed while running; or, after a signal, it did not
 *          stop within the bound
 *   2      a usage error (reported by the command before the service starts)
 *   128+n  a second signal n while stopping (130 SIGINT, 143 SIGTERM): stopped at once
 *
 * Waiting is never an exit: a daemon whose server or agent is not there yet keeps retrying,
 * and its timers keep the process alive (the rule in src/common/clock.ts). The first signal
 * aborts the body's signal: the body closes its streams, removes its sockets, closes its
 * datastore and resolves. Whatever the body leaves open then (a handle nobody closed) cannot
 * keep the process past a short grace: it exits with the code anyway and names what was open.
 */
import { constants } from 'node:os';
import { isSigilError } from '../common/errors.js';
import type { CommandIo } from './io.js';
import { reportError } from './commands/output.js';

/** The signals that ask a daemon to stop. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/** How long a graceful stop may take after the first signal before the process exits with 1. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** How long handles left open after the body ended may hold the process before it exits anyway. */
export const DEFAULT_EXIT_GRACE_MS = 2_000;

/** The reason the body's signal carries when a stop was requested. */
export class StopRequested extends Error {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`stop requested by ${signal}`);
    this.name = 'StopRequested';
    this.signal = signal;
  }
}

/** Options of runService. */
export interface ServiceOptions {
  /** How the command names itself in its messages, e.g. `sigil agent`. */
  readonly name: string;
  readonly io: CommandIo;
  /** Bound on a graceful stop after the first signal (DEFAULT_STOP_TIMEOUT_MS). */
  readonly stopTimeoutMs?: number;
  /** Grace for handles left open once the body ended (DEFAULT_EXIT_GRACE_MS). */
  readonly exitGraceMs?: number;
  /**
   * A second signal this soon after the first is the same request, not "stop at once" (default
   * 0: every second signal forces). For `sigil demo` under `npm run demo`, where one Ctrl-C
   * reaches the process twice: from the terminal and forwarded by npm.
   */
  readonly repeatWithinMs?: number;
  /** Ends the process; `process.exit` unless a test injects another. */
  readonly exit?: (code: number) => void;
}

/**
 * The work of a service: runs until `stop` aborts, then stops gracefully and resolves; or
 * resolves once its job is done. Rejects on a failure (the service exits 1).
 */
export type ServiceBody = (stop: AbortSignal) => Promise<void>;

/** Resolves once `signal` aborts (at once if it has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** True for what an aborted wait rejects with: the stop reason itself, an AbortError, ERR_CANCELLED. */
function isStopEcho(err: unknown, signal: AbortSignal): boolean {
  if (err === signal.reason) return true;
  if (err instanceof Error && err.name === 'AbortError') return true;
  return isSigilError(err, 'ERR_CANCELLED');
}

/** The exit status of a process ended by `signal` (128 + its number). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** Resources that do not hold the event loop open on their own and are no leak. */
const IGNORED_RESOURCES = new Set(['TTYWrap', 'PipeWrap', 'SignalWrap']);

/**
 * Runs `body` under the exit-code contract above and resolves to the exit code. Signal
 * handlers are in place before the body starts, so a stop asked while the daemon is still
 * waiting for its server (or its agent) ends it with 0.
 */
export async function runService(options: ServiceOptions, body: ServiceBody): Promise<number> {
  const { name, io } = options;
  const exit = options.exit ?? ((code: number): void => process.exit(code));
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const exitGraceMs = options.exitGraceMs ?? DEFAULT_EXIT_GRACE_MS;
  const repeatWithinMs = options.repeatWithinMs ?? 0;
  const ctl = new AbortController();
  let requested: NodeJS.Signals | undefined;
  let requestedAt = 0;
  let stopBound: NodeJS.Timeout | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (requested !== undefined) {
      if (performance.now() - requestedAt < repeatWithinMs) return;
      io.err(`${name}: ${signal} received again; stopping at once\n`);
      exit(signalExitCode(signal));
      return;
    }
    requested = signal;
    requestedAt = performance.now();
    io.err(`${name}: ${signal} received; stopping (a second signal${repeatWithinMs > 0 ? ` after ${repeatWithinMs / 1000} s` : ''} stops at once)\n`);
    // Ref'd on purpose: this is the one timer a stopping daemon must not outlive.
    stopBound = setTimeout(() => {
      io.err(`${name}: did not stop within ${Math.round(stopTimeoutMs / 1000)} s of ${signal}; exiting\n`);
      exit(1);
    }, stopTimeoutMs);
    ctl.abort(new StopRequested(signal));
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  let code: number;
  try {
    await body(ctl.signal);
    code = 0;
  } catch (err) {
    code = ctl.signal.aborted && isStopEcho(err, ctl.signal) ? 0 : reportError(io, err);
  } finally {
    clearTimeout(stopBound);
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  }
  // Unref'd: when the body closed everything the process ends by itself before this fires.
  setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((r) => !IGNORED_RESOURCES.has(r));
    io.err(`${name}: stopped, but ${open.length === 0 ? 'the event loop' : open.join(', ')} still open after ${exitGraceMs} ms; exiting\n`);
    exit(code);
  }, exitGraceMs).unref();
  return code;
}
