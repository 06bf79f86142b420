/**
 * The audit trail in SQL (src/datastore/audit-trail.ts): `appendAudit` runs inside the
 * transaction of the change it records; the rest serves the shipper. Write transactions are
 * serialised (SQLite's one writer, PostgreSQL's schema-wide advisory write lock), so seq
 * order is commit order: a reader that has seen seq N will never later see a smaller one
 * appear, and a cursor can safely mean "everything through N".
 */
import { randomUUID } from 'node:crypto';
import { SigilError } from '../../common/errors.js';
import type { AuditFor, AuditRecord, StoredAuditRecord } from '../audit-trail.js';
import { validateTime } from '../validation.js';
import type { SqlExecutor } from './sql-driver.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;
/** Cursor names: short and plain, they come from the config. */
const CURSOR_NAME = /^[A-Za-z0-9._-]{1,64}$/;

const SQL = {
  insert: 'INSERT INTO audit_records (audit_id, at, record) VALUES (?, ?, ?)',
  list: 'SELECT seq, audit_id, at, record FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?',
  getCursor: 'SELECT seq FROM audit_cursors WHERE name = ?',
  setCursor:
    'INSERT INTO audit_cursors (name, seq, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at WHERE excluded.seq > audit_cursors.seq',
  prune: 'DELETE FROM audit_records WHERE at < ? AND seq <= ?',
} as const;

/** Runs work in a datastore transaction (the SqlDatastore's own wrapper, so errors map the same way). */
export type SqlTransactionRunner = <T>(mode: 'read' | 'write', fn: (tx: SqlExecutor) => Promise<T>) => Promise<T>;

/** Stores the record `audit` makes of `changed`, in the caller's (write) transaction; nothing when there is no audit. */
export async function appendAudit<T>(tx: SqlExecutor, audit: AuditFor<T> | undefined, changed: T, now: number): Promise<void> {
  if (audit === undefined) return;
  const record: AuditRecord = audit(changed);
  await tx.run(SQL.insert, [randomUUID(), now, JSON.stringify(record)]);
}

function checkSeq(seq: unknown, what: string): number {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid ${what} ${String(seq)}`, { reason: 'invalid-audit-seq' });
  }
  return seq;
}

function checkCursorName(name: unknown): string {
  if (typeof name !== 'string' || !CURSOR_NAME.test(name)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'audit cursor name must be 1 to 64 of [A-Za-z0-9._-]', { reason: 'invalid-audit-cursor' });
  }
  return name;
}

/** The shipper's side of the audit trail over SQL. */
export class SqlAuditStore {
  readonly #tx: SqlTransactionRunner;
  readonly #now: () => number;

  constructor(tx: SqlTransactionRunner, now: () => number) {
    this.#tx = tx;
    this.#now = now;
  }

  /** Records with seq > afterSeq, oldest first. */
  async list(afterSeq: number, limit: number = DEFAULT_LIMIT): Promise<StoredAuditRecord[]> {
    const after = checkSeq(afterSeq, 'audit seq');
    const n = checkSeq(limit, 'audit limit');
    return this.#tx('read', async (tx) =>
      (await tx.all(SQL.list, [after, n === 0 ? DEFAULT_LIMIT : Math.min(n, MAX_LIMIT)])).map((r) => ({
        seq: Number(r['seq']),
        auditId: r['audit_id'] as string,
        at: Number(r['at']),
        record: JSON.parse(r['record'] as string) as AuditRecord,
      })),
    );
  }

  /** The seq a cursor has shipped through; 0 for a new one. */
  async getCursor(name: string): Promise<number> {
    const n = checkCursorName(name);
    return this.#tx('read', async (tx) => Number((await tx.all(SQL.getCursor, [n]))[0]?.['seq'] ?? 0));
  }

  /** Moves a cursor forward (never back). */
  async setCursor(name: string, seq: number): Promise<void> {
    const n = checkCursorName(name);
    const s = checkSeq(seq, 'audit seq');
    await this.#tx('write', (tx) => tx.run(SQL.setCursor, [n, s, this.#now()]));
  }

  /** Deletes shipped records older than `beforeMs`. */
  async prune(beforeMs: number, throughSeq: number): Promise<number> {
    const before = validateTime(beforeMs, 'prune time');
    const through = checkSeq(throughSeq, 'audit seq');
    return this.#tx('write', (tx) => tx.run(SQL.prune, [before, through]));
  }
}
