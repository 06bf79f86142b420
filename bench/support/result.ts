/**
 * What every benchmark reports: one or more table rows (figure, floor measured in the same
 * run or the reason there is none, ratio, target, met?) plus free-form details and notes for
 * the JSON summary.
 */

/** One measured quantity, with the number kept for the JSON and the text for the table. */
export interface Metric {
  readonly value: number;
  readonly unit: string;
  readonly text: string;
}

/** Why a row has no floor: the row is absolute, or its floor could not be measured here. */
export interface NoFloor {
  /** Printed as `none (<reason>)`. */
  readonly none: string;
}

/** The floor of a row whose figure stands on its own (nothing comparable to measure). */
export const ABSOLUTE: NoFloor = { none: 'absolute' };

/** True for a measured floor, false for a NoFloor. */
export function isMeasuredFloor(f: Metric | NoFloor): f is Metric {
  return !('none' in f);
}

/** One line of the final table. */
export interface BenchRow {
  /** Benchmark number in the issue's table (1-8, 9 cross-server propagation (issue 14), 10; 11 is issue 19's PKCS#11 token). */
  readonly bench: number;
  readonly what: string;
  readonly figure: Metric | null;
  /** The floor measured in the same run, or why there is none; null only when the row was not measured. */
  readonly floor: Metric | NoFloor | null;
  /** figure/floor (throughput and latency alike); null when there is no measured floor. */
  readonly ratio: number | null;
  readonly target: string;
  /** null when not measured (skipped or failed). */
  readonly met: boolean | null;
}

/** What one benchmark hands back to the runner. */
export interface BenchOutcome {
  readonly rows: BenchRow[];
  /** Everything else worth keeping in the JSON summary (counts, per-round numbers). */
  readonly details: Record<string, unknown>;
  /** Caveats printed under the table (reduced counts, missing floors, why a target is missed). */
  readonly notes: string[];
}

/** Options every benchmark gets from the runner. */
export interface BenchOptions {
  /** Full counts (slower): 100k-entry agent sync through the agent, 1M entries in SQLite, … */
  readonly full: boolean;
  /** Tiny counts, for checking that the suite runs at all. */
  readonly quick: boolean;
  /** Benchmark 10's number of agents (`--agents=N`), overriding its default. */
  readonly agents?: number;
}

/** A benchmark module. */
export interface Benchmark {
  readonly id: number;
  readonly name: string;
  run(options: BenchOptions, log: (line: string) => void): Promise<BenchOutcome>;
}

/** A throughput metric in operations per second. */
export function rate(opsPerSec: number): Metric {
  const text = opsPerSec >= 10_000 ? `${(opsPerSec / 1000).toFixed(1)}k/s` : `${Math.round(opsPerSec)}/s`;
  return { value: opsPerSec, unit: 'ops/s', text };
}

/** A duration metric in milliseconds. */
export function millis(ms: number, label = ''): Metric {
  const t = ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${ms.toFixed(1)} ms` : `${ms.toFixed(2)} ms`;
  return { value: ms, unit: 'ms', text: label === '' ? t : `${label} ${t}` };
}

/** A CPU-time metric in microseconds per operation. */
export function cpuMicros(us: number): Metric {
  return { value: us, unit: 'µs', text: `${us >= 100 ? us.toFixed(0) : us.toFixed(1)} µs CPU` };
}

/** A size metric in bytes. */
export function bytes(n: number, label = ''): Metric {
  const t = Math.abs(n) >= 10_240 ? `${(n / 1024).toFixed(0)} KB` : Math.abs(n) >= 1024 ? `${(n / 1024).toFixed(2)} KB` : `${Math.round(n)} B`;
  return { value: n, unit: 'bytes', text: label === '' ? t : `${label} ${t}` };
}

/** A row for a benchmark that could not be measured. */
export function unmeasured(bench: number, what: string, target: string): BenchRow {
  return { bench, what, figure: null, floor: null, ratio: null, target, met: null };
}

/** The p-th percentile (0-100) of samples, nearest-rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

/** The median of samples. */
export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** Milliseconds elapsed since `start` (a process.hrtime.bigint() reading). */
export function elapsedMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}
