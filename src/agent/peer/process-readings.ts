/**
 * Readings of /proc shared by every check of the same turn: one callback from the event loop
 * and the promise continuations it starts. A push to 1,000 streams of one process would
 * otherwise read that process's status 1,000 times within a few milliseconds; sharing one
 * reading per pid per turn keeps the guarantee (each send is preceded by a reading taken
 * after the event that caused it) at one read per pid.
 *
 * A reading is `status` then the start time. The start time taken *after* the status proves
 * the status belonged to the process we know: start times only grow, so a pid that left and
 * came back (or was reused) in between shows a different one. A leading start-time read
 * would add nothing.
 */
import { isSigilError } from '../../common/errors.js';
import type { ProcessInfo, ProcessStatus } from './process-info.js';

/** One reading of a pid: its status, and its start time read right after. */
interface Reading {
  /** Undefined when the pid named no process at the status read. */
  readonly status: ProcessStatus | undefined;
  /** Undefined when the pid named no process at the start time read. */
  readonly startTime: number | undefined;
}

/** Reads process credentials and liveness, sharing a reading among the checks of one turn. */
export class ProcessReadings {
  readonly #processes: ProcessInfo;
  readonly #turn = new Map<number, Reading>();
  #clearScheduled = false;

  constructor(processes: ProcessInfo) {
    this.#processes = processes;
  }

  /** The ProcessInfo the readings come from. */
  get processes(): ProcessInfo {
    return this.#processes;
  }

  /**
   * Reads `pid` now (never from the turn's readings) and remembers it for the rest of this
   * turn. Returns its status while the pid still names the process started at `startTime`.
   */
  fresh(pid: number, startTime: number): ProcessStatus | undefined {
    let status: ProcessStatus | undefined;
    try {
      status = this.#processes.status(pid);
    } catch (err) {
      if (!isSigilError(err, 'ERR_NOT_FOUND')) throw err;
      status = undefined;
    }
    const reading: Reading = { status, startTime: status === undefined ? undefined : this.#processes.startTime(pid) };
    this.#remember(pid, reading);
    return reading.startTime === startTime ? reading.status : undefined;
  }

  /** Like `fresh`, but answers from a reading already taken in this turn when there is one. */
  shared(pid: number, startTime: number): ProcessStatus | undefined {
    const reading = this.#turn.get(pid);
    if (reading === undefined) return this.fresh(pid, startTime);
    return reading.startTime === startTime ? reading.status : undefined;
  }

  #remember(pid: number, reading: Reading): void {
    this.#turn.set(pid, reading);
    if (this.#clearScheduled) return;
    this.#clearScheduled = true;
    // nextTick runs once the current callback and every promise continuation it queued are
    // done: attestation's last reading and the first send (continuations of one another)
    // share it, the next I/O callback or timer does not.
    process.nextTick(() => {
      this.#clearScheduled = false;
      this.#turn.clear();
    });
  }
}
