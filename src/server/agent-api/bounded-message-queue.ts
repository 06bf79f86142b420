/**
 * A FIFO of stream messages waiting for a reader, with a hard cap: a peer that sends
 * faster than the protocol allows (before it is even authenticated) costs bounded memory.
 */

/** What `push` did with a message. */
export type PushResult = 'queued' | 'delivered' | 'dropped' | 'overflow';

/** Holds at most `capacity` unread messages; the first push beyond that fails the queue for good. */
export class BoundedMessageQueue<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (m: T | undefined) => void; reject: (err: unknown) => void } | undefined;
  private ended = false;
  private failure: { err: unknown } | undefined;
  /** The most unread messages kept. */
  readonly capacity: number;

  /** `capacity` is the most unread messages kept; it must be a positive integer. */
  constructor(capacity: number) {
    this.capacity = capacity;
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
  }

  /** Unread messages held now. */
  get size(): number {
    return this.items.length;
  }

  /** True once `fail` was called (by the caller on overflow, or otherwise). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /**
   * Hands `m` to a waiting reader or keeps it; returns 'overflow' (and keeps nothing) when
   * the queue is full, so the caller can fail it; after an end or a failure, drops `m`.
   */
  push(m: T): PushResult {
    if (this.failure !== undefined || this.ended) return 'dropped';
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(m);
      return 'delivered';
    }
    if (this.items.length >= this.capacity) return 'overflow';
    this.items.push(m);
    return 'queued';
  }

  /** Marks the end of input: readers get what is left, then `undefined`. */
  end(): void {
    this.ended = true;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(undefined);
    }
  }

  /** Fails the queue: unread messages are discarded and every read (pending or later) rejects with `err`. */
  fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = { err };
    this.items.length = 0;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
  }

  /** Throws the failure, if any; for checkpoints between reads. */
  throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.err;
  }

  /** The next message, `undefined` after the end, or the failure; one reader at a time. */
  next(): Promise<T | undefined> {
    if (this.failure !== undefined) return Promise.reject(this.failure.err);
    const m = this.items.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.ended) return Promise.resolve(undefined);
    if (this.waiter !== undefined) return Promise.reject(new Error('bounded message queue allows one reader at a time'));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
}
