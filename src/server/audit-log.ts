/**
 * The audit log: one JSON line per SVID issued, attestation, refusal and admin change.
 * Records carry who, what, entry ID, SPIFFE ID, serial and expiry — by construction never
 * a key, token or JWT: the record type has no field that could hold one.
 *
 * Two paths reach the sink. A committed change's record is written by the datastore in the
 * change's own transaction and copied here by the AuditShipper (audit-shipper.ts), with its
 * `seq` and `auditId`; `committed()` waits for that copy so a caller is answered after its
 * line is out. Everything that commits nothing (SVIDs signed, refusals, failures) is written
 * straight to the sink by `record`/`recordAll`, before the caller is answered.
 */
import { closeSync, fchmodSync, fsync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { AuditRecord } from '../datastore/audit-trail.js';

export type { AuditRecord } from '../datastore/audit-trail.js';

/** Where audit lines go. */
export interface AuditSink {
  write(line: string): void;
  /** Appends several lines at once (optional; without it each goes through `write`). */
  writeMany?(lines: readonly string[]): void;
  /** Resolves once what was written is durable (file: fsync); the shipper moves its cursor only after it. */
  flush?(): Promise<void>;
  close(): void;
}

/** An audit sink appending to a file (mode 0600), synchronously so no record is lost on crash. */
export function fileAuditSink(path: string): AuditSink {
  let fd: number;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    fd = openSync(path, 'a', 0o600);
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot open audit log ${path}`, { reason: 'audit-log', cause: err });
  }
  // the mode given to open applies only to a new file: bring an older one down too
  try {
    fchmodSync(fd, 0o600);
  } catch (err) {
    closeSync(fd);
    throw new SigilError('ERR_CONFIG_INVALID', `cannot make audit log ${path} mode 0600`, { reason: 'audit-log', cause: err });
  }
  let open = true;
  /** fsyncs on the pool now: the descriptor is closed only after them (a closed one could be reused meanwhile). */
  let syncing = 0;
  const closeNow = (): void => {
    if (syncing === 0) closeSync(fd);
  };
  return {
    write: (line) => {
      if (open) writeSync(fd, line);
    },
    // one system call for a batch of SVIDs
    writeMany: (lines) => {
      if (open) writeSync(fd, lines.join(''));
    },
    // off the event loop (libuv's pool): under load an fsync takes milliseconds, and a
    // synchronous one held every agent's call meanwhile
    flush: () =>
      new Promise<void>((resolve, reject) => {
        if (!open) return resolve();
        syncing++;
        fsync(fd, (err) => {
          syncing--;
          if (!open) closeNow();
          if (err === null) resolve();
          else reject(err);
        });
      }),
    close: () => {
      if (!open) return;
      open = false;
      closeNow();
    },
  };
}

/** An audit sink writing to standard output (config `auditLog.path: "-"`, for containers that collect stdout). */
export function stdoutAuditSink(): AuditSink {
  return {
    write: (line) => void process.stdout.write(line),
    // the pipe has taken everything written before this empty write once its callback runs
    flush: () => new Promise<void>((resolve, reject) => process.stdout.write('', (err) => (err === null || err === undefined ? resolve() : reject(err)))),
    close: () => undefined,
  };
}

/** An audit sink keeping lines in memory (tests). */
export function memoryAuditSink(): AuditSink & { readonly lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (line) => void lines.push(line), close: () => undefined };
}

/** What `AuditLog.committed` waits for: the shipper's copy of every committed record so far. */
export interface CommittedAuditFlusher {
  flush(): Promise<void>;
}

/** Writes audit records as JSON lines with a timestamp. */
export class AuditLog {
  readonly #sink: AuditSink;
  readonly #clock: Clock;
  #shipper: CommittedAuditFlusher | undefined;

  constructor(sink: AuditSink, clock: Clock) {
    this.#sink = sink;
    this.#clock = clock;
  }

  /** The sink records go to (the shipper writes committed ones to the same one). */
  get sink(): AuditSink {
    return this.#sink;
  }

  /** Connects the shipper whose copies `committed()` waits for. */
  attachShipper(shipper: CommittedAuditFlusher): void {
    this.#shipper = shipper;
  }

  /**
   * Waits until every change committed so far has its line in the sink (a no-op without a
   * shipper). Never rejects: the record is already durable in the datastore, and a failed
   * copy is retried by the shipper.
   */
  async committed(): Promise<void> {
    await this.#shipper?.flush();
  }

  /** Appends one record. */
  record(rec: AuditRecord): void {
    this.#sink.write(this.#line(rec, this.#clock.now().toISOString()));
  }

  /** Appends several records (a batch of SVIDs), in order, with one timestamp; in one write when the sink can. */
  recordAll(recs: readonly AuditRecord[]): void {
    if (recs.length === 0) return;
    const time = this.#clock.now().toISOString();
    const lines = recs.map((rec) => this.#line(rec, time));
    if (this.#sink.writeMany !== undefined) this.#sink.writeMany(lines);
    else for (const l of lines) this.#sink.write(l);
  }

  #line(rec: AuditRecord, time: string): string {
    return `${JSON.stringify({ time, ...rec })}\n`;
  }

  close(): void {
    this.#sink.close();
  }
}
