/**
 * The audit log: one JSON line per SVID issued, attestation, refusal and admin change.
 * Records carry who, what, entry ID, SPIFFE ID, serial and expiry — by construction never
 * a key, token or JWT: the record type has no field that could hold one.
 */
import { closeSync, fchmodSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';

/** One audit record. */
export interface AuditRecord {
  /** The caller: an agent's SPIFFE ID, `admin:uid:<uid>` (plain `admin` when the uid is unknown), or `anonymous`. */
  readonly who: string;
  /** Kernel credentials (SO_PEERCRED) of an admin caller's connection. */
  readonly caller?: { readonly uid: number; readonly gid: number; readonly pid: number };
  /** The action, e.g. `x509svid.issue`, `agent.attest`, `entry.create`. */
  readonly action: string;
  /** `ok`, `denied` or `error`. */
  readonly result: 'ok' | 'denied' | 'error';
  readonly entryId?: string;
  readonly spiffeId?: string;
  readonly serial?: string;
  /** Expiry, ISO 8601. */
  readonly expiresAt?: string;
  /** Sigil error code or reason of a refusal. */
  readonly reason?: string;
  /** Non-secret extra facts (attestor name, token ID, audience). */
  readonly detail?: Readonly<Record<string, string | number | boolean>>;
}

/** Where audit lines go. */
export interface AuditSink {
  write(line: string): void;
  /** Appends several lines at once (optional; without it each goes through `write`). */
  writeMany?(lines: readonly string[]): void;
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
  return {
    write: (line) => {
      if (open) writeSync(fd, line);
    },
    // one system call for a batch of SVIDs
    writeMany: (lines) => {
      if (open) writeSync(fd, lines.join(''));
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** An audit sink writing to standard output (config `auditLog.path: "-"`, for containers that collect stdout). */
export function stdoutAuditSink(): AuditSink {
  return { write: (line) => void process.stdout.write(line), close: () => undefined };
}

/** An audit sink keeping lines in memory (tests). */
export function memoryAuditSink(): AuditSink & { readonly lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (line) => void lines.push(line), close: () => undefined };
}

/** Writes audit records as JSON lines with a timestamp. */
export class AuditLog {
  readonly #sink: AuditSink;
  readonly #clock: Clock;

  constructor(sink: AuditSink, clock: Clock) {
    this.#sink = sink;
    this.#clock = clock;
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
