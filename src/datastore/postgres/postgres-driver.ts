/**
 * node-postgres behind the async SqlDriver seam, for several Sigil servers sharing one
 * database.
 *
 * Write transactions are serialised across every server on the same schema by a
 * transaction-scoped advisory lock taken right after BEGIN. That gives PostgreSQL the same
 * guarantee the SQLite driver gets from BEGIN IMMEDIATE: the neutral layer's
 * read-check-write sequences (duplicate checks, createEntryIfNotExists) cannot interleave,
 * and an entry event's ID is drawn from the sequence while the lock is held. The lock is
 * released only after the commit is visible, so events become visible in ID order: a
 * reader that remembers the last ID it saw can never later find a smaller ID appear
 * (docs/datastore.md, "Entry events across servers"). Reads take no lock and run in
 * REPEATABLE READ, READ ONLY transactions.
 *
 * Every statement's `?` → `$n` rewrite is done once and cached, together with a name under
 * which each pooled connection prepares it on first use. A connection that drops is
 * discarded: a transaction whose connection failed before BEGIN completed starts over on
 * another (nothing of it reached the database; after a server restart every idle pooled
 * connection may be dead), a read is retried once wherever it failed, and a write that lost
 * its connection midway surfaces as ERR_UNAVAILABLE: the server rolled it back, and the
 * caller decides whether to try again.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { SigilError, isSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { logRetry } from '../../common/retry-log.js';
import type { SqlDialect, SqlDriver, SqlExecutor, SqlRow, SqlValue } from '../sql/sql-driver.js';
import { toPositionalSql } from './positional-sql.js';

/** PostgreSQL's fragments: lists travel as one JSON parameter, expanded by the json set functions. */
export const POSTGRES_DIALECT: SqlDialect = {
  name: 'postgres',
  textListSubquery: 'SELECT j.value AS value FROM json_array_elements_text(?::json) AS j(value)',
  textListParam: (values) => JSON.stringify(values),
  pairListSubquery: 'SELECT p.pair->>0 AS type, p.pair->>1 AS value FROM json_array_elements(?::json) AS p(pair)',
  pairListParam: (pairs) => JSON.stringify(pairs),
  isUniqueViolation: (err) => pgCode(err) === '23505',
  // delivered at commit, once per (channel, payload) per transaction
  notifySql: 'SELECT pg_notify(?, ?) AS sent',
};

/** How long the listening connection waits before it connects again after losing the server. */
const LISTEN_RETRY_MS = 1000;

/** What the driver needs: a ready pg pool configuration (no connection string: see postgres-datastore.ts). */
export interface PostgresDriverOptions {
  /** Connection settings for every pooled connection. */
  readonly pool: pg.PoolConfig;
  /** The schema the connections' search_path points at; keys the advisory locks. */
  readonly schema: string;
  readonly logger: Logger;
  /** How long a write transaction waits for another server's write lock; then ERR_UNAVAILABLE `datastore-busy`. */
  readonly lockTimeoutMs: number;
}

/** Named prepared statements cached per driver; past this many distinct texts, new ones run unnamed. */
const MAX_CACHED_STATEMENTS = 2000;
/** The first half of every advisory lock key Sigil takes ('SIGL'); the second half names the schema. */
const LOCK_CLASS_WRITE = 0x5349474c;
/** The migration lock's first half, distinct from the write lock so both can be held at once. */
const LOCK_CLASS_MIGRATE = 0x5349474d;
/** How often opening polls for another server's migration lock. */
const MIGRATION_LOCK_POLL_MS = 50;
/** SQLSTATEs that mean "try again later" rather than "this request is wrong". */
const BUSY_CODES = new Set(['55P03', '40001', '40P01', '57014', '53300']);
/** SQLSTATEs that mean the server ended or refused the session. */
const GONE_CODES = new Set(['57P01', '57P02', '57P03']);

function pgCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * Node's socket and resolver codes for a server that cannot be reached now (nothing listens yet,
 * a network or DNS outage, a connection cut, this process out of file descriptors for a while):
 * waiting may fix them. ENOENT is a Unix socket path (`host=/run/postgresql`) whose server has not
 * created it yet.
 */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'EPIPE',
  'ENOENT',
  'EMFILE',
  'ENFILE',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SOCKET_CLOSED',
]);

/**
 * What pg and pg-pool raise, with no code at all, when the socket closes or an attempt times
 * out: their own fixed texts (node-postgres gives these errors no code to tell them by).
 */
const PG_UNREACHABLE_MESSAGES =
  /^(?:Connection terminated(?: unexpectedly| due to connection timeout)?|timeout expired|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)$/;

/** OpenSSL's certificate verdicts as Node reports them in `code` (node:tls). */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'EPROTO',
]);

/** pg's own texts (no code) when the server answers the SSL request with no, or the handshake fails. */
const PG_TLS_MESSAGES = /^(?:The server does not support SSL connections|There was an error establishing an SSL connection)$/;

/** How a connection attempt failed: an outage waiting may fix, a TLS mismatch it cannot, or neither. */
function connectionFailure(err: unknown): 'unreachable' | 'tls' | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = pgCode(err);
  // a name with several addresses, each tried in turn (autoSelectFamily): judged by what they all did
  if (code === '' && err instanceof AggregateError && err.errors.length > 0) {
    const each = err.errors.map(connectionFailure);
    if (each.includes('tls')) return 'tls';
    return each.every((f) => f === 'unreachable') ? 'unreachable' : undefined;
  }
  if (code !== '') {
    if (UNREACHABLE_CODES.has(code)) return 'unreachable';
    if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return 'tls';
    return undefined;
  }
  if (PG_TLS_MESSAGES.test(err.message)) return 'tls';
  if (PG_UNREACHABLE_MESSAGES.test(err.message)) return 'unreachable';
  return undefined;
}

/** True when a (mapped) error means the connection, not the statement, failed. */
function isConnectionError(err: unknown): boolean {
  return isSigilError(err) && (err.reason === 'datastore-unavailable' || err.reason === 'datastore-tls');
}

function unavailable(err: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', 'datastore is unavailable', { reason: 'datastore-unavailable', cause: err });
}

/**
 * A connection PostgreSQL and this server could not agree on TLS for (sslmode=require against a
 * server without TLS, an untrusted or mismatched certificate). To a caller it is an outage like any
 * other; opening turns it into a configuration error (postgres-datastore.ts), since waiting cannot fix it.
 */
function tlsFailed(err: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', 'datastore is unavailable: TLS failed', { reason: 'datastore-tls', cause: err });
}

function busy(err: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', 'datastore is busy', { reason: 'datastore-busy', cause: err });
}

function closedError(): SigilError {
  return new SigilError('ERR_UNAVAILABLE', 'datastore is closed', { reason: 'datastore-closed' });
}

/** Errors from a statement: connection failures and contention become SigilErrors, the rest stay raw for the neutral layer. */
function mapStatementError(err: unknown): unknown {
  if (isSigilError(err)) return err;
  const code = pgCode(err);
  if (BUSY_CODES.has(code)) return busy(err);
  if (code.startsWith('08') || GONE_CODES.has(code)) return unavailable(err);
  const failure = connectionFailure(err);
  if (failure === 'unreachable') return unavailable(err);
  if (failure === 'tls') return tlsFailed(err);
  return err;
}

/** Waits `ms`, or throws ERR_CANCELLED as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = (): SigilError => new SigilError('ERR_CANCELLED', 'opening the datastore was cancelled', { reason: 'cancelled' });
    if (signal?.aborted === true) return reject(cancelled());
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The second half of the advisory lock keys: 32 bits of a hash of the schema name, so schemas do not block each other. */
export function schemaLockKey(schema: string): number {
  return createHash('sha256').update(`sigil:${schema}`).digest().readInt32BE(0);
}

/** 64-bit integers come back as numbers: every one Sigil stores (epoch ms, IDs, counts) is far below 2^53. */
function int8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new SigilError('ERR_INTERNAL', `integer ${text} from the datastore is out of range`, { reason: 'datastore-error' });
  return n;
}

/** Per-pool type parsers, so the process-wide pg.types stay untouched for anyone else. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 && format !== 'binary' ? int8 : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** pg sends numbers, strings, Buffers and null as they are; bigint and plain byte views need help. */
function toPgValue(v: SqlValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}

interface Prepared {
  readonly text: string;
  readonly name: string | undefined;
}

/** A SqlDriver over a node-postgres pool. */
export class PostgresDriver implements SqlDriver {
  readonly dialect = POSTGRES_DIALECT;
  readonly #pool: pg.Pool;
  readonly #log: Logger;
  readonly #beginWrite: string;
  readonly #schemaKey: number;
  readonly #prepared = new Map<string, Prepared>();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #beginRetries: number;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The NOTIFY channel of this schema: other servers on it hear this one's changes. */
  readonly changeChannel: string;
  readonly #poolConfig: pg.PoolConfig;
  readonly #listeners = new Set<(kind: string) => void>();
  #listenClient: pg.Client | undefined;
  #listenRetry: NodeJS.Timeout | undefined;
  #listenConnecting: Promise<void> | undefined;

  constructor(options: PostgresDriverOptions) {
    this.#poolConfig = options.pool;
    this.changeChannel = `sigil_changes_${(schemaLockKey(options.schema) >>> 0).toString(16)}`;
    this.#log = options.logger;
    this.#schemaKey = schemaLockKey(options.schema);
    const lockTimeout = Math.max(1, Math.trunc(options.lockTimeoutMs));
    // One round trip: BEGIN, a bounded wait for the lock, then the lock that serialises writers on this schema.
    this.#beginWrite = `BEGIN; SET LOCAL lock_timeout = ${lockTimeout}; SELECT pg_advisory_xact_lock(${LOCK_CLASS_WRITE}, ${this.#schemaKey})`;
    this.#pool = new pg.Pool({ ...options.pool, types: TYPES });
    this.#beginRetries = (options.pool.max ?? 10) + 1;
    // An idle pooled connection that the server ends emits here; without a listener the process would crash.
    this.#pool.on('error', (err) => this.#log.warn({ err }, 'datastore connection lost'));
  }

  /** The cached `$n` text and statement name for `sql`. */
  #prepare(sql: string): Prepared {
    let p = this.#prepared.get(sql);
    if (p === undefined) {
      const { text } = toPositionalSql(sql);
      // Past the cap (a caller building unbounded SQL texts) statements still work, just unnamed and uncached.
      if (this.#prepared.size >= MAX_CACHED_STATEMENTS) return { text, name: undefined };
      p = { text, name: `sigil_${this.#prepared.size + 1}` };
      this.#prepared.set(sql, p);
    }
    return p;
  }

  #executor(client: pg.PoolClient): SqlExecutor {
    const query = async (sql: string, params: readonly SqlValue[], array: boolean): Promise<pg.QueryResult> => {
      const p = this.#prepare(sql);
      const config: pg.QueryConfig = { text: p.text, values: params.map(toPgValue) };
      if (p.name !== undefined) config.name = p.name;
      try {
        return array ? await client.query({ ...config, rowMode: 'array' }) : await client.query(config);
      } catch (err) {
        throw mapStatementError(err);
      }
    };
    return {
      all: async (sql, params = []) => (await query(sql, params, false)).rows as SqlRow[],
      rows: async (sql, params = []) => (await query(sql, params, true)).rows as unknown[][],
      run: async (sql, params = []) => (await query(sql, params, false)).rowCount ?? 0,
      exec: async (sql) => {
        try {
          await client.query(sql);
        } catch (err) {
          throw mapStatementError(err);
        }
      },
    };
  }

  transaction<T>(mode: 'read' | 'write', fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#track(mode, fn);
  }

  single<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#track('single', fn);
  }

  #track<T>(mode: 'read' | 'write' | 'single', fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    // Registered synchronously so close() waits for work handed to the driver before it.
    const work = this.#attempt(mode, fn, true, this.#beginRetries);
    this.#inflight.add(work);
    void work.then(
      () => this.#inflight.delete(work),
      () => this.#inflight.delete(work),
    );
    return work;
  }

  /**
   * One try of a transaction. `readRetry`: a read may run again after losing its connection
   * midway. `beginRetries`: how many more times a transaction whose connection failed before
   * BEGIN completed may start over; nothing of it reached the database, and after a server
   * restart every idle pooled connection may be dead, so this allows one per pooled connection.
   */
  async #attempt<T>(mode: 'read' | 'write' | 'single', fn: (tx: SqlExecutor) => Promise<T>, readRetry: boolean, beginRetries: number): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      if (this.#closed) throw closedError();
      throw mapStatementError(err);
    }
    let begun = false;
    try {
      if (mode !== 'single') {
        try {
          await client.query(mode === 'write' ? this.#beginWrite : 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        } catch (err) {
          throw mapStatementError(err);
        }
      }
      begun = true;
      const result = await fn(this.#executor(client));
      if (mode !== 'single') {
        try {
          await client.query('COMMIT');
        } catch (err) {
          throw mapStatementError(err);
        }
      }
      client.release();
      return result;
    } catch (err) {
      if (isConnectionError(err)) {
        // The connection is gone: destroy it rather than hand it back to the pool.
        client.release(err instanceof Error ? err : true);
        if (!this.#closed && !begun && beginRetries > 0) {
          this.#log.debug({ mode }, 'datastore connection lost, retrying on a new one');
          return this.#attempt(mode, fn, readRetry, beginRetries - 1);
        }
        if (!this.#closed && begun && mode !== 'write' && readRetry) {
          this.#log.debug({ mode }, 'datastore connection lost, retrying on a new one');
          return this.#attempt(mode, fn, false, beginRetries);
        }
        throw err;
      }
      if (mode === 'single') client.release();
      else await this.#rollback(client);
      throw err;
    }
  }

  async #rollback(client: pg.PoolClient): Promise<void> {
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (err) {
      client.release(err instanceof Error ? err : true);
    }
  }

  /**
   * Holds the schema's migration lock (a session advisory lock, separate from the write lock)
   * on a dedicated connection while `fn` runs, so servers starting together migrate one after
   * another. The lock is polled rather than waited for inside the server, so `signal` can stop
   * the wait; after `timeoutMs` it throws ERR_UNAVAILABLE `datastore-busy`.
   */
  async withMigrationLock<T>(timeoutMs: number, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#closed) throw closedError();
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw mapStatementError(err);
    }
    const key = `${LOCK_CLASS_MIGRATE}, ${this.#schemaKey}`;
    let locked = false;
    try {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const r = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${key}) AS ok`);
        if (r.rows[0]?.ok === true) break;
        if (performance.now() >= deadline) throw busy(new Error('migration lock wait timed out'));
        await sleep(MIGRATION_LOCK_POLL_MS, signal);
      }
      locked = true;
      const result = await fn();
      await client.query(`SELECT pg_advisory_unlock(${key})`);
      client.release();
      return result;
    } catch (err) {
      // Destroying the connection also drops a session lock still held after a failed step.
      client.release(true);
      if (locked) this.#log.debug({}, 'migration lock released by closing its connection');
      throw mapStatementError(err);
    }
  }

  /** Runs one statement (PostgreSQL `$n` text) outside any transaction: schema creation before migrations. */
  async queryOutside(sql: string, params: readonly SqlValue[] = []): Promise<SqlRow[]> {
    if (this.#closed) throw closedError();
    try {
      return (await this.#pool.query(sql, params.map(toPgValue))).rows as SqlRow[];
    } catch (err) {
      throw mapStatementError(err);
    }
  }

  /**
   * Listens on the schema's change channel over one connection of its own (outside the pool)
   * and calls `listener` with each payload. The connection is made again after it is lost; what
   * was signalled meanwhile is lost, which the callers' polling absorbs.
   */
  async subscribe(listener: (kind: string) => void): Promise<() => void> {
    this.#listeners.add(listener);
    if (this.#listenClient === undefined && this.#listenRetry === undefined) {
      this.#listenConnecting ??= this.#connectListener().finally(() => {
        this.#listenConnecting = undefined;
      });
      await this.#listenConnecting;
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopListening();
    };
  }

  async #connectListener(): Promise<void> {
    if (this.#closed || this.#listeners.size === 0) return;
    const { max: _max, idleTimeoutMillis: _idle, ...clientConfig } = this.#poolConfig;
    const client = new pg.Client({ ...clientConfig, types: TYPES });
    client.on('error', (err) => {
      this.#log.warn({ err }, 'datastore change listener lost its connection');
      this.#dropListener(client);
    });
    client.on('end', () => this.#dropListener(client));
    client.on('notification', (n) => {
      if (n.channel !== this.changeChannel) return;
      for (const l of [...this.#listeners]) l(n.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.changeChannel}`);
      if (this.#closed || this.#listeners.size === 0) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#listenClient = client;
    } catch (err) {
      logRetry(this.#log, mapStatementError(err), { retryInMs: LISTEN_RETRY_MS }, 'datastore change listener cannot connect; retrying');
      await client.end().catch(() => undefined);
      this.#scheduleListener();
    }
  }

  #dropListener(client: pg.Client): void {
    if (this.#listenClient !== client) return;
    this.#listenClient = undefined;
    this.#scheduleListener();
  }

  #scheduleListener(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#listenRetry !== undefined) return;
    // ref'd like every timer a daemon waits on (DESIGN.md, Processes); close() clears it
    this.#listenRetry = setTimeout(() => {
      this.#listenRetry = undefined;
      void this.#connectListener();
    }, LISTEN_RETRY_MS);
  }

  #stopListening(): void {
    if (this.#listenRetry !== undefined) clearTimeout(this.#listenRetry);
    this.#listenRetry = undefined;
    const c = this.#listenClient;
    this.#listenClient = undefined;
    void c?.end().catch(() => undefined);
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      this.#listeners.clear();
      this.#stopListening();
      await this.#listenConnecting;
      await Promise.allSettled([...this.#inflight]);
      await this.#pool.end();
    })();
    return this.#closing;
  }
}
