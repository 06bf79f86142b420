/**
 * Workloads for benchmarks 4 and 5, in a child process so they reach the Workload API over
 * the real Unix socket as another process would (SO_PEERCRED then reports this child).
 * The parent side is `WorkloadDriver`; the child side is workload-driver-main.ts.
 *
 * Times are process.hrtime readings, CLOCK_MONOTONIC on Linux, which is one clock for every
 * process on the machine: the parent can compare them with its own.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Commands the parent sends. */
export type DriverCommand =
  | { readonly type: 'latency'; readonly address: string; readonly count: number }
  | { readonly type: 'open'; readonly group: string; readonly address: string; readonly count: number }
  | { readonly type: 'close'; readonly group: string };

/** What the child sends back. */
export type DriverReply =
  | { readonly type: 'latency'; readonly samplesMs: number[]; readonly errors: number }
  | { readonly type: 'opened'; readonly group: string; readonly open: number; readonly errors: number; readonly firstError?: string }
  | { readonly type: 'round'; readonly group: string; readonly round: number; readonly lastAt: string }
  | { readonly type: 'closed'; readonly group: string };

const HERE = dirname(fileURLToPath(import.meta.url));

/** One child process holding workload connections. */
export class WorkloadDriver {
  readonly #child: ChildProcess;
  readonly #waiters: Array<{ match: (r: DriverReply) => boolean; resolve: (r: DriverReply) => void }> = [];
  readonly #early: DriverReply[] = [];

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (m) => {
      const r = m as DriverReply;
      const i = this.#waiters.findIndex((w) => w.match(r));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(r);
      else this.#early.push(r);
    });
  }

  /** Forks a driver. */
  static start(): WorkloadDriver {
    return new WorkloadDriver(fork(join(HERE, 'workload-driver-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }

  /** The child's pid. */
  get pid(): number {
    return this.#child.pid ?? -1;
  }

  send(cmd: DriverCommand): void {
    this.#child.send(cmd);
  }

  /** The next reply matching `match` (including one that already arrived). */
  next<T extends DriverReply>(match: (r: DriverReply) => r is T, timeoutMs = 120_000): Promise<T> {
    const i = this.#early.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#early.splice(i, 1)[0] as T);
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`workload driver ${this.pid}: no reply within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({
        match,
        resolve: (r) => {
          clearTimeout(t);
          resolve(r as T);
        },
      });
    });
  }

  /** Connects `count` times, one after another, and returns connect -> first message times. */
  async latency(address: string, count: number): Promise<{ samplesMs: number[]; errors: number }> {
    this.send({ type: 'latency', address, count });
    return this.next((r): r is Extract<DriverReply, { type: 'latency' }> => r.type === 'latency');
  }

  /** Opens `count` FetchX509SVID streams (each on its own connection); resolves when all got their first message. */
  async open(group: string, address: string, count: number): Promise<Extract<DriverReply, { type: 'opened' }>> {
    this.send({ type: 'open', group, address, count });
    return this.next((r): r is Extract<DriverReply, { type: 'opened' }> => r.type === 'opened' && r.group === group);
  }

  /** Resolves with the hrtime at which the last stream of `group` received its `round`-th push. */
  async roundDone(group: string, round: number, timeoutMs = 60_000): Promise<bigint> {
    const r = await this.next((x): x is Extract<DriverReply, { type: 'round' }> => x.type === 'round' && x.group === group && x.round === round, timeoutMs);
    return BigInt(r.lastAt);
  }

  /** Closes a group's streams. */
  async close(group: string): Promise<void> {
    this.send({ type: 'close', group });
    await this.next((r): r is Extract<DriverReply, { type: 'closed' }> => r.type === 'closed' && r.group === group);
  }

  /** Ends the child. */
  stop(): void {
    this.#child.kill('SIGKILL');
  }
}
