/**
 * Time as a seam: every component takes a Clock so rotation and expiry tests run in
 * milliseconds. `systemClock` is real time; `ManualClock` moves only when told to.
 *
 * The rule for what keeps a process alive (DESIGN.md, "Processes"): a timer somebody is
 * waiting on — a daemon's retry backoff, a source's first-update wait or its timeout, a
 * renewal — is ref'd, so a process whose only work is waiting keeps running. Only a
 * `background` timer is unref'd: a library's refresh or reconnect after it has delivered what
 * its caller awaited, so an application can exit once its own work is done without closing
 * every source first. Daemons stop their own timers on shutdown; the CLI bounds that stop.
 */

/** A cancellable timer handle. */
export interface TimerHandle {
  cancel(): void;
}

/** How a timer relates to the process's lifetime. */
export interface TimerOptions {
  /**
   * True for a library's background refresh, which must not keep the process alive on its own
   * (unref'd). Absent or false: the timer keeps the process alive until it fires or is cancelled.
   */
  readonly background?: boolean;
}

/** The source of time for every component. */
export interface Clock {
  /** Milliseconds since the epoch. */
  nowMs(): number;
  /** The current time as a Date. */
  now(): Date;
  /** Calls `fn` after `ms` milliseconds of this clock's time. */
  setTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle;
  /** Resolves after `ms` of this clock's time; rejects with the signal's reason on abort. */
  sleep(ms: number, signal?: AbortSignal, options?: TimerOptions): Promise<void>;
}

/** Sleeps `ms` of `clock`'s time through its timers; rejects with the signal's reason on abort (for Clock implementations). */
export function sleepWith(clock: Clock, ms: number, signal?: AbortSignal, options?: TimerOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms, options);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Real wall-clock time. Timers keep the process alive unless `background` (see the rule above). */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  now: () => new Date(),
  setTimer(fn, ms, options) {
    // setTimeout clamps delays above 2^31-1 ms to 1 ms; cap instead so far timers stay far.
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2_147_483_647)));
    if (options?.background === true) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  sleep(ms, signal, options) {
    return sleepWith(systemClock, ms, signal, options);
  },
};

interface PendingTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** A clock for tests: time stands still until `advance` or `set` moves it. */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, PendingTimer>();

  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }

  nowMs(): number {
    return this.#now;
  }

  now(): Date {
    return new Date(this.#now);
  }

  setTimer(fn: () => void, ms: number, _options?: TimerOptions): TimerHandle {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
    return { cancel: () => this.#timers.delete(seq) };
  }

  sleep(ms: number, signal?: AbortSignal, options?: TimerOptions): Promise<void> {
    return sleepWith(this, ms, signal, options);
  }

  /** Number of timers not yet fired. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order (including ones they set). */
  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  /** Moves time to `targetMs`, firing due timers in order. */
  set(targetMs: number): void {
    for (;;) {
      let next: PendingTimer | undefined;
      for (const t of this.#timers.values()) {
        if (t.at <= targetMs && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (next === undefined) break;
      this.#timers.delete(next.seq);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = Math.max(this.#now, targetMs);
  }
}
