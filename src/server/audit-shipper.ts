/**
 * Copies the audit trail from the datastore to the audit sink (file or stdout), in seq order,
 * at least once. A pass reads the records after the cursor, writes their lines, waits until
 * the sink has them durably (fsync), and only then moves the named cursor in the datastore:
 * a crash between the two writes the same records again on the next pass, with the same
 * `seq` and `auditId`, so a reader dedupes by `auditId`. On start it catches up with
 * everything committed while it was down (reconcile after a crash); afterwards it runs when
 * a caller asks (`flush`, after each change) and on a timer (records of other servers on a
 * shared PostgreSQL, and retries after a sink error). Shipped records older than the
 * retention are pruned.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { AuditTrailStore, StoredAuditRecord } from '../datastore/audit-trail.js';
import type { AuditSink, CommittedAuditFlusher } from './audit-log.js';

/** Records read and written per step of a pass. */
const BATCH = 500;

/** What a shipper needs. */
export interface AuditShipperOptions {
  readonly store: AuditTrailStore;
  readonly sink: AuditSink;
  /** The cursor's name in the datastore (config `auditLog.cursor`). */
  readonly cursor: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** How often a pass runs without being asked. */
  readonly intervalMs: number;
  /** How long shipped records stay in the datastore. */
  readonly retentionMs: number;
}

/** One audit line as shipped: the record's commit time, its place and ID, then the record. */
export function shippedLine(r: StoredAuditRecord): string {
  return `${JSON.stringify({ time: new Date(r.at).toISOString(), seq: r.seq, auditId: r.auditId, ...r.record })}\n`;
}

/** Ships the datastore's audit trail to the sink; see the file comment. */
export class AuditShipper implements CommittedAuditFlusher {
  readonly #o: AuditShipperOptions;
  #cursor = 0;
  /** The pass running now, if any. */
  #current: Promise<void> | undefined;
  /** The pass queued behind it, shared by every caller that asked meanwhile. */
  #next: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #stopped = false;
  #lastPrune = 0;

  constructor(options: AuditShipperOptions) {
    this.#o = options;
  }

  /** The seq shipped through. */
  get cursor(): number {
    return this.#cursor;
  }

  /** Loads the cursor and ships everything committed before this start; then runs on its timer. */
  async start(): Promise<void> {
    this.#cursor = await this.#o.store.getAuditCursor(this.#o.cursor);
    const from = this.#cursor;
    await this.flush();
    if (this.#cursor > from) this.#o.logger.info({ fromSeq: from, toSeq: this.#cursor }, 'audit trail caught up');
    this.#arm();
  }

  /** Resolves after a pass that started after this call has finished (never rejects; errors are logged). */
  flush(): Promise<void> {
    if (this.#next !== undefined) return this.#next;
    const before = this.#current ?? Promise.resolve();
    const next: Promise<void> = before.then(async () => {
      this.#next = undefined;
      this.#current = next;
      try {
        await this.#pass();
      } finally {
        if (this.#current === next) this.#current = undefined;
      }
    });
    this.#next = next;
    return next;
  }

  /** Stops the timer after one last pass. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.flush();
  }

  #arm(): void {
    if (this.#stopped) return;
    this.#timer = this.#o.clock.setTimer(() => {
      void this.flush().then(() => this.#arm());
    }, this.#o.intervalMs);
  }

  async #pass(): Promise<void> {
    const { store, sink, logger } = this.#o;
    try {
      for (;;) {
        const records = await store.listAuditRecords(this.#cursor, BATCH);
        const last = records[records.length - 1];
        if (last === undefined) break;
        const lines = records.map(shippedLine);
        if (sink.writeMany !== undefined) sink.writeMany(lines);
        else for (const l of lines) sink.write(l);
        await sink.flush?.();
        await store.setAuditCursor(this.#o.cursor, last.seq);
        this.#cursor = last.seq;
        if (records.length < BATCH) break;
      }
      await this.#prune();
    } catch (err) {
      // the records stay in the datastore; the next pass writes them
      logger.error({ err, seq: this.#cursor }, 'shipping the audit trail failed');
    }
  }

  /** At most once per tenth of the retention (and at least hourly): prune is a range delete, but no need to run it per change. */
  async #prune(): Promise<void> {
    const now = this.#o.clock.nowMs();
    if (now - this.#lastPrune < Math.min(this.#o.retentionMs / 10, 3_600_000)) return;
    this.#lastPrune = now;
    const n = await this.#o.store.pruneAuditRecords(now - this.#o.retentionMs, this.#cursor);
    if (n > 0) this.#o.logger.info({ pruned: n, throughSeq: this.#cursor }, 'audit trail pruned');
  }
}
