/**
 * better-sqlite3 behind the async SqlDriver seam. The driver is synchronous and owns one
 * connection, so transactions are queued one after another: a transaction's callback may
 * await, and nothing else may slip onto the connection meanwhile. Statements are prepared
 * once and cached by their SQL text (the neutral layer only builds a bounded set of them).
 *
 * Planner statistics matter here: without them SQLite answers "entries of these 100
 * parents, by id" through the parent index plus a sort on every page (seconds for 100k
 * entries) instead of one ordered scan (~200 ms). So after enough rows changed, or an hour
 * of writes, the driver runs `PRAGMA optimize`, which re-analyses only stale tables within
 * `analysis_limit` and costs milliseconds.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { SigilError } from '../../common/errors.js';
import type { SqlDialect, SqlDriver, SqlExecutor, SqlRow, SqlValue } from '../sql/sql-driver.js';

/** SQLite's fragments: lists travel as one JSON text parameter, expanded by json_each. */
export const SQLITE_DIALECT: SqlDialect = {
  name: 'sqlite',
  textListSubquery: 'SELECT j.value AS value FROM json_each(?) AS j',
  textListParam: (values) => JSON.stringify(values),
  pairListSubquery: "SELECT json_extract(j.value, '$[0]') AS type, json_extract(j.value, '$[1]') AS value FROM json_each(?) AS j",
  pairListParam: (pairs) => JSON.stringify(pairs),
  isUniqueViolation: (err) => {
    const code = (err as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
  },
};

/** Rows changed (all tables) after which planner statistics are refreshed. */
const OPTIMIZE_AFTER_CHANGES = 10_000;
/** Longest time between statistics refreshes while writes happen. */
const OPTIMIZE_EVERY_MS = 3_600_000;

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Lock contention (another process holds the write lock past the busy timeout) is temporary. */
function mapDriverError(err: unknown): unknown {
  const code = sqliteCode(err);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new SigilError('ERR_UNAVAILABLE', 'datastore is busy', { reason: 'datastore-busy', cause: err });
  }
  return err;
}

/** A SqlDriver over one better-sqlite3 connection. */
export class SqliteDriver implements SqlDriver {
  readonly dialect = SQLITE_DIALECT;
  readonly #db: BetterSqlite3.Database;
  readonly #statements = new Map<string, BetterSqlite3.Statement<unknown[], unknown>>();
  readonly #executor: SqlExecutor;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  #changesSinceOptimize = 0;
  #lastOptimizeAt = performance.now();

  constructor(db: BetterSqlite3.Database) {
    this.#db = db;
    this.#executor = {
      all: async (sql, params = []) => this.#statement(sql).all(params as SqlValue[]) as SqlRow[],
      rows: async (sql, params = []) => this.#statement(sql, true).all(params as SqlValue[]) as unknown[][],
      run: async (sql, params = []) => {
        const changes = this.#statement(sql).run(params as SqlValue[]).changes;
        this.#changesSinceOptimize += changes;
        return changes;
      },
      exec: async (sql) => void this.#db.exec(sql),
    };
  }

  /** The cached statement for `sql`; raw (array rows) and object-row uses are separate statements. */
  #statement(sql: string, raw = false): BetterSqlite3.Statement<unknown[], unknown> {
    const key = raw ? `raw:${sql}` : sql;
    let s = this.#statements.get(key);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      if (raw) s.raw(true);
      this.#statements.set(key, s);
    }
    return s;
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task);
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  transaction<T>(mode: 'read' | 'write', fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    return this.#enqueue(async () => {
      if (!this.#db.open) throw closedError();
      try {
        // IMMEDIATE takes the write lock now, so a read-check-write cannot be overtaken by another process.
        this.#statement(mode === 'write' ? 'BEGIN IMMEDIATE' : 'BEGIN').run();
      } catch (err) {
        throw mapDriverError(err);
      }
      try {
        const result = await fn(this.#executor);
        this.#statement('COMMIT').run();
        if (mode === 'write') this.#maybeOptimize();
        return result;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw mapDriverError(err);
      }
    });
  }

  single<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    // queued like a transaction: the one connection must not run it inside another's open transaction
    return this.#enqueue(async () => {
      if (!this.#db.open) throw closedError();
      try {
        return await fn(this.#executor);
      } catch (err) {
        throw mapDriverError(err);
      }
    });
  }

  /** Refreshes planner statistics after OPTIMIZE_AFTER_CHANGES rows changed, or hourly while writes happen. */
  #maybeOptimize(): void {
    const now = performance.now();
    if (this.#changesSinceOptimize < OPTIMIZE_AFTER_CHANGES && (this.#changesSinceOptimize === 0 || now - this.#lastOptimizeAt < OPTIMIZE_EVERY_MS)) return;
    this.#changesSinceOptimize = 0;
    this.#lastOptimizeAt = now;
    try {
      this.#db.pragma('optimize = 0x10002');
    } catch {
      // Statistics are an optimisation; a failure here must not fail the committed write.
    }
  }

  close(): Promise<void> {
    if (this.#closed) return this.#queue;
    this.#closed = true;
    return this.#enqueue(async () => {
      if (!this.#db.open) return;
      try {
        // Lets SQLite refresh planner statistics it found worth keeping; cheap when nothing changed.
        this.#db.pragma('optimize');
      } catch {
        // Statistics are an optimisation; failing to refresh them must not keep the file open.
      }
      this.#db.close();
    });
  }
}

function closedError(): SigilError {
  return new SigilError('ERR_UNAVAILABLE', 'datastore is closed', { reason: 'datastore-closed' });
}
