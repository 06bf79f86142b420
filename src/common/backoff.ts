/** Exponential backoff with full jitter, reset after success; used by every retry loop. */

/** Settings of a Backoff. */
export interface BackoffOptions {
  readonly initialMs?: number;
  readonly maxMs?: number;
  readonly multiplier?: number;
  /** Random source in [0,1); injectable for tests. */
  readonly random?: () => number;
}

/** Produces successive retry delays: base grows by `multiplier` up to `maxMs`, each jittered to [base/2, base]. */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #multiplier: number;
  readonly #random: () => number;
  #current: number;

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialMs ?? 200;
    this.#max = options.maxMs ?? 30_000;
    this.#multiplier = options.multiplier ?? 2;
    this.#random = options.random ?? Math.random;
    this.#current = this.#initial;
  }

  /** The next delay in milliseconds. */
  next(): number {
    const base = this.#current;
    this.#current = Math.min(this.#max, this.#current * this.#multiplier);
    return Math.round(base / 2 + (base / 2) * this.#random());
  }

  /** Starts again from the initial delay (call after a success). */
  reset(): void {
    this.#current = this.#initial;
  }
}
