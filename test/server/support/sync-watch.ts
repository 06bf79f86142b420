/** Test helper: records a SyncEntries stream's messages and waits for the ones a test expects. */
import type { ClientReadableStream } from '@grpc/grpc-js';
import { fromServiceError } from '../../../src/grpc/status.js';
import type { SigilError } from '../../../src/common/errors.js';
import type { SyncMessage } from '../../helpers/agent-client.js';

/** A watched sync stream. */
export class SyncWatch {
  readonly messages: SyncMessage[] = [];
  /** The error the stream ended with, if any. */
  error: SigilError | undefined;
  ended = false;
  readonly #stream: ClientReadableStream<SyncMessage>;
  readonly #waiters = new Set<() => void>();

  constructor(stream: ClientReadableStream<SyncMessage>) {
    this.#stream = stream;
    stream.on('data', (m: SyncMessage) => {
      this.messages.push(m);
      this.#wake();
    });
    stream.on('error', (err: unknown) => {
      this.error = fromServiceError(err);
      this.ended = true;
      this.#wake();
    });
    stream.on('end', () => {
      this.ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves when `pred` holds (checked on every message), rejects after `ms`. */
  until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, ms);
      this.#waiters.add(check);
    });
  }

  /** Entry IDs the agent holds after applying every message so far (FULL resets, DELTA adds and deletes). */
  held(): Set<string> {
    const out = new Set<string>();
    for (const m of this.messages) {
      if (m.kind === 'FULL' && m.entries.length >= 0 && this.messages.indexOf(m) === this.#firstOfBatch(m)) out.clear();
      for (const e of m.entries) out.add(e.id);
      for (const id of m.deleted_entry_ids) out.delete(id);
    }
    return out;
  }

  #firstOfBatch(m: SyncMessage): number {
    return this.messages.findIndex((x) => x.batch === m.batch);
  }

  /** Waits until the held set contains every ID of `present` and none of `absent`. */
  async holds(present: readonly string[], absent: readonly string[] = [], ms = 5000): Promise<void> {
    await this.until(
      () => {
        const h = this.held();
        return present.every((id) => h.has(id)) && absent.every((id) => !h.has(id));
      },
      ms,
      `entries ${present.join(',')} present and ${absent.join(',')} absent`,
    );
  }

  /** Every entry ID ever sent as an upsert. */
  everSent(): Set<string> {
    return new Set(this.messages.flatMap((m) => m.entries.map((e) => e.id)));
  }

  cancel(): void {
    this.#stream.cancel();
  }
}
