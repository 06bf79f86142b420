/**
 * Many deadlines behind one timer: a binary min-heap of items ordered by `dueMs`, with the
 * clock's single timer armed for the earliest. The SVID minter (svid-minter.ts) keeps each
 * held SVID in it, due first at its rotation and then at its expiry; a Node timer for each of
 * those deadlines (Timeout, closure, handle, and a TimersList per distinct delay) cost more
 * memory than the SVID's own state.
 */
import type { Clock, TimerHandle } from '../common/clock.js';

/** What an item of a DeadlineQueue carries; `queueIndex` belongs to the queue (-1 when not in it). */
export interface Deadline {
  dueMs: number;
  queueIndex: number;
}

/** setTimeout's largest delay; a farther deadline is re-armed when this one fires. */
const MAX_TIMER_MS = 2_147_483_647;

/** A min-heap of deadlines that calls `onDue` with each item whose time has come, earliest first. */
export class DeadlineQueue<T extends Deadline> {
  readonly #heap: T[] = [];
  readonly #clock: Clock;
  readonly #onDue: (item: T) => void;
  #timer: TimerHandle | undefined;
  /** The due time the timer is armed for (Infinity when none). */
  #armedFor = Infinity;
  #stopped = false;

  constructor(clock: Clock, onDue: (item: T) => void) {
    this.#clock = clock;
    this.#onDue = onDue;
  }

  /** Items waiting. */
  get size(): number {
    return this.#heap.length;
  }

  /** Adds `item` due at `dueMs`, or moves it there when it is queued already. */
  schedule(item: T, dueMs: number): void {
    if (item.queueIndex >= 0) this.#removeAt(item.queueIndex);
    item.dueMs = dueMs;
    item.queueIndex = this.#heap.length;
    this.#heap.push(item);
    this.#up(item.queueIndex);
    this.#arm();
  }

  /** Takes `item` out; harmless when it is not queued. */
  remove(item: T): void {
    if (item.queueIndex < 0) return;
    this.#removeAt(item.queueIndex);
    // A timer armed for a removed earliest item just fires early and re-arms.
  }

  /** Empties the queue and cancels the timer; nothing is called any more. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const item of this.#heap) item.queueIndex = -1;
    this.#heap.length = 0;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.#clock.nowMs();
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined || top.dueMs > now || this.#stopped) break;
      this.#removeAt(0);
      this.#onDue(top);
    }
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    const top = this.#heap[0];
    const due = top === undefined ? Infinity : top.dueMs;
    if (due >= this.#armedFor) return;
    this.#timer?.cancel();
    this.#armedFor = due;
    this.#timer = this.#clock.setTimer(() => this.#fire(), Math.min(MAX_TIMER_MS, Math.max(0, due - this.#clock.nowMs())));
  }

  #removeAt(i: number): void {
    const heap = this.#heap;
    const item = heap[i] as T;
    const last = heap.pop() as T;
    item.queueIndex = -1;
    if (last === item) return;
    heap[i] = last;
    last.queueIndex = i;
    this.#up(i);
    this.#down(last.queueIndex);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i] as T;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as T;
      if (p.dueMs <= item.dueMs) break;
      heap[i] = p;
      p.queueIndex = i;
      i = parent;
    }
    heap[i] = item;
    item.queueIndex = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i] as T;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && (heap[r] as T).dueMs < (heap[l] as T).dueMs ? r : l;
      const c = heap[child] as T;
      if (c.dueMs >= item.dueMs) break;
      heap[i] = c;
      c.queueIndex = i;
      i = child;
    }
    heap[i] = item;
    item.queueIndex = i;
  }
}
