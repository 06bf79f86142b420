/**
 * Tells open SyncEntries streams that something changed, so a new entry reaches agents
 * within a second instead of at the next poll. In-process writers (the admin API) notify
 * directly; a slow poll of the datastore's entry events catches writers elsewhere.
 */
import type { Datastore } from '../datastore/datastore.js';
import type { Logger } from '../common/logger.js';

/** What changed. */
export type ChangeKind = 'entries' | 'bundles' | 'agents';

/** A subscriber callback. */
export type ChangeListener = (kind: ChangeKind) => void;

/** Fan-out of change notifications to sync streams. */
export class ChangeHub {
  readonly #listeners = new Set<ChangeListener>();
  #timer: NodeJS.Timeout | undefined;
  #lastEventId = 0;
  #stopped = false;

  /** Registers a listener; returns its unsubscribe function. */
  subscribe(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Number of subscribers (open sync streams). */
  get size(): number {
    return this.#listeners.size;
  }

  /** Tells every subscriber that `kind` changed. */
  notify(kind: ChangeKind): void {
    for (const l of [...this.#listeners]) l(kind);
  }

  /** Polls the datastore's newest entry event every `intervalMs` (real time: it paces I/O) and notifies on a new one. */
  async startPolling(ds: Datastore, logger: Logger, intervalMs = 1000): Promise<void> {
    this.#lastEventId = await ds.latestEntryEventId();
    const tick = (): void => {
      if (this.#stopped) return;
      ds.latestEntryEventId()
        .then((id) => {
          if (id !== this.#lastEventId) {
            this.#lastEventId = id;
            this.notify('entries');
          }
        })
        .catch((err: unknown) => logger.warn({ err }, 'entry event poll failed'))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs).unref();
        });
    };
    this.#timer = setTimeout(tick, intervalMs).unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#listeners.clear();
  }
}
