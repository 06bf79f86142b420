/**
 * The thin seam between the dialect-neutral SQL datastore and one database driver.
 * Statements are plain SQL with `?` positional parameters; a driver whose database wants
 * `$1, $2, …` (PostgreSQL) rewrites them. The few things plain SQL cannot say the same
 * way in every dialect (a list passed as one parameter) come from the driver's SqlDialect.
 */

/** A value bound to a `?` parameter or read from a column. Booleans travel as 0/1. */
export type SqlValue = string | number | bigint | Uint8Array | null;

/** One result row, keyed by column name (or alias). */
export type SqlRow = Record<string, unknown>;

/** Runs statements inside one open transaction. */
export interface SqlExecutor {
  /** Runs a statement that returns rows (SELECT, or a write with RETURNING). */
  all(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]>;
  /** Like `all` but each row is an array of column values in select order (cheaper for big pages). */
  rows(sql: string, params?: readonly SqlValue[]): Promise<unknown[][]>;
  /** Runs a statement without rows; resolves to the number of rows changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /** Runs DDL without parameters (migrations); never cached. */
  exec(sql: string): Promise<void>;
}

/** The dialect-specific SQL fragments the neutral code needs. */
export interface SqlDialect {
  readonly name: string;
  /**
   * A subquery yielding one text column `value`, one row per element of a list bound to a
   * single `?` (so a statement with a list stays one cached statement whatever the length).
   */
  readonly textListSubquery: string;
  /** Encodes a list of strings as the one parameter of `textListSubquery`. */
  textListParam(values: readonly string[]): SqlValue;
  /** A subquery yielding columns `type` and `value` from pairs bound to a single `?`. */
  readonly pairListSubquery: string;
  /** Encodes `[type, value]` pairs as the one parameter of `pairListSubquery`. */
  pairListParam(pairs: readonly (readonly [string, string])[]): SqlValue;
  /** True when `err` is a unique or primary key violation raised by this driver. */
  isUniqueViolation(err: unknown): boolean;
  /** A statement `(channel, kind)` that tells other connections of a change at commit; absent when the database cannot. */
  readonly notifySql?: string;
}

/** A connection (or pool) that runs work in serialised-or-isolated transactions. */
export interface SqlDriver {
  readonly dialect: SqlDialect;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws.
   * `write` takes the write lock up front so read-check-write sequences cannot race.
   * Throws ERR_UNAVAILABLE (reason `datastore-closed` or `datastore-busy`) when it cannot run.
   */
  transaction<T>(mode: 'read' | 'write', fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Runs `fn`, which runs exactly one read statement, with no BEGIN/COMMIT around it: one
   * statement sees one consistent snapshot on its own (autocommit), so the transaction around it
   * only cost two more statements (on PostgreSQL, two more round trips). Same errors as `transaction`.
   */
  single<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** The channel `notifySql` signals on; absent when the database cannot tell other connections. */
  readonly changeChannel?: string;
  /**
   * Calls `listener` with the kind of each change another connection signalled (a hint:
   * notifications may be lost while the listening connection is down). Resolves to the
   * unsubscribe function.
   */
  subscribe?(listener: (kind: string) => void): Promise<() => void>;
  /** Waits for running work, then closes; later transactions fail with `datastore-closed`. */
  close(): Promise<void>;
}
