/**
 * The datastore for several Sigil servers sharing one PostgreSQL database (HA). Every rule
 * lives in SqlDatastore; this file only connects, points the connections at Sigil's schema,
 * and migrates under an advisory lock so servers starting together do not race.
 *
 * The connection string never carries the password: it typically sits in a config file
 * that is not secret, and may reach argv or a process listing. The password comes from a
 * 0600 file (`passwordFile`), or from pg's usual ~/.pgpass lookup, or is not needed (peer,
 * trust or certificate authentication).
 */
import { readFileSync, statSync } from 'node:fs';
import { parseIntoClientConfig } from 'pg-connection-string';
import type pg from 'pg';
import { systemClock, type Clock } from '../../common/clock.js';
import { SigilError, isSigilError } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import { Secret } from '../../common/secret.js';
import { migrate } from '../sql/migrate.js';
import { SqlDatastore } from '../sql/sql-datastore.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';
import { PostgresDriver } from './postgres-driver.js';

/** Options of openPostgresDatastore. */
export interface PostgresDatastoreOptions {
  /** `postgres://user@host:port/database?sslmode=verify-full`; must not contain a password (use `passwordFile`). */
  readonly connectionString: string;
  /** A file whose first line is the password (should be 0600); absent = ~/.pgpass or passwordless auth. */
  readonly passwordFile?: string;
  /** The schema holding Sigil's tables, created when absent: lowercase letters, digits, `_`; default `public`. */
  readonly schema?: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Most connections this server opens; default 10, at least 2 (migration holds one while another migrates). */
  readonly maxConnections?: number;
  /** How long a write waits for another server's write transaction; default 10000 ms, then ERR_UNAVAILABLE `datastore-busy`. */
  readonly lockTimeoutMs?: number;
  /** How long opening waits for another server's migration; default 60000 ms. */
  readonly migrationLockTimeoutMs?: number;
  /** How long opening one connection may take; default 5000 ms, then ERR_UNAVAILABLE `datastore-unavailable`. */
  readonly connectTimeoutMs?: number;
}

const DEFAULT_SCHEMA = 'public';
const DEFAULT_MAX_CONNECTIONS = 10;
const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
const DEFAULT_MIGRATION_LOCK_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** A transaction left open this long by a hung server is ended by PostgreSQL, releasing its write lock. */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
/** Idle pooled connections are closed after this long. */
const IDLE_CONNECTION_MS = 30_000;
/** A bare identifier, so it needs no quoting anywhere (search_path, CREATE SCHEMA). */
const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;
/**
 * SQLSTATE classes that mean the configuration is wrong, not a passing outage: 28 invalid
 * authorization (wrong password, unknown role, pg_hba refusal), 3D invalid catalog name (no such
 * database), 42 access rule violation (no privilege on the schema). Waiting does not fix them,
 * so a starting server exits on them; class 08 (connection), 57P0x (shutting down, starting up)
 * and 53300 (too many connections), like Node's socket codes (ECONNREFUSED, ETIMEDOUT, …), are
 * outages it waits out (src/server/open-datastore.ts); a TLS failure is not (see the driver).
 */
const OPEN_FAILED_CLASSES = ['28', '3D', '42'];

/** A Datastore in a PostgreSQL schema, shareable by several servers. */
export class PostgresDatastore extends SqlDatastore {
  /** The schema holding the tables. */
  readonly schema: string;

  constructor(schema: string, driver: PostgresDriver, options: { clock: Clock; logger: Logger; schemaVersion: number }) {
    super(driver, options);
    this.schema = schema;
  }
}

function configInvalid(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', message, { reason, ...(cause === undefined ? {} : { cause }) });
}

function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw configInvalid('invalid-datastore-option', `${name} must be a positive integer, got ${String(value)}`);
  return value;
}

/** The password from the first line of `path`, warning when the file is open to others. */
function readPassword(path: string, logger: Logger): Secret<string> {
  let text: string;
  try {
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) logger.warn({ path, mode: mode.toString(8) }, 'datastore password file is accessible to other users');
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw configInvalid('password-file-unreadable', `cannot read datastore password file ${path}`, err);
  }
  const password = text.split(/\r?\n/, 1)[0] ?? '';
  if (password === '') throw configInvalid('password-file-empty', `datastore password file ${path} is empty`);
  return new Secret(password);
}

/** pg's connection settings from the string, with Sigil's schema, timeouts and name added; refuses a password in the string. */
function poolConfig(options: PostgresDatastoreOptions, schema: string, logger: Logger): pg.PoolConfig {
  if (typeof options.connectionString !== 'string' || options.connectionString === '') {
    throw configInvalid('invalid-connection-string', 'datastore connection string must be a non-empty string');
  }
  let parsed: pg.ClientConfig;
  try {
    parsed = parseIntoClientConfig(options.connectionString);
  } catch (err) {
    // The string is not echoed: a malformed one may still hold a password.
    throw configInvalid('invalid-connection-string', 'datastore connection string cannot be parsed', err);
  }
  if (typeof parsed.password === 'string' && parsed.password !== '') {
    throw configInvalid('password-in-connection-string', 'datastore connection string must not contain a password: use passwordFile');
  }
  const { password: _ignored, ...rest } = parsed;
  const password = options.passwordFile === undefined ? undefined : readPassword(options.passwordFile, logger);
  const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isSafeInteger(max) || max < 2) throw configInvalid('invalid-datastore-option', `maxConnections must be an integer of at least 2, got ${String(max)}`);
  // Startup options: later -c settings win, so Sigil's come after any the string carries.
  const startup = `-c search_path=${schema} -c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_TIMEOUT_MS}`;
  return {
    ...rest,
    ...(password === undefined ? {} : { password: () => password.reveal() }),
    options: rest.options === undefined || rest.options === '' ? startup : `${rest.options} ${startup}`,
    application_name: rest.application_name ?? 'sigil',
    max,
    connectionTimeoutMillis: positiveMs(options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs'),
    idleTimeoutMillis: IDLE_CONNECTION_MS,
    keepAlive: true,
  };
}

/** Where the database is, for logs: never the password, and never the whole string. */
function describe(config: pg.PoolConfig, schema: string): Record<string, unknown> {
  return { host: config.host ?? '', port: config.port ?? 5432, database: config.database ?? '', schema };
}

/**
 * Where `options` point (host, port, database, schema), for log lines about reaching it; empty
 * when the string cannot be parsed (opening reports that). Never the password or the string.
 */
export function postgresLocation(options: Pick<PostgresDatastoreOptions, 'connectionString' | 'schema'>): Record<string, unknown> {
  try {
    const parsed = parseIntoClientConfig(options.connectionString);
    return describe({ host: parsed.host ?? '', ...(parsed.port === undefined ? {} : { port: parsed.port }), database: parsed.database ?? '' }, options.schema ?? DEFAULT_SCHEMA);
  } catch {
    return {};
  }
}

/** PostgreSQL's own words for a refusal (`database "x" does not exist`): its message never carries the password. */
function refusalOf(err: unknown, code: string): string {
  const message = err instanceof Error ? err.message.split('\n', 1)[0] ?? '' : '';
  return message === '' ? `SQLSTATE ${code}` : `${message.slice(0, 200)} (SQLSTATE ${code})`;
}

/** The TLS failure's own words (pg's, or OpenSSL's verdict as Node gives it): neither carries a secret. */
function tlsProblemOf(cause: unknown): string {
  const message = cause instanceof Error ? cause.message.split('\n', 1)[0] ?? '' : '';
  const code = (cause as { code?: unknown } | null)?.code;
  const text = message === '' ? 'unknown TLS error' : message.slice(0, 200);
  return typeof code === 'string' && code !== '' ? `${text} (${code})` : text;
}

/**
 * Opens (creating the schema and migrating as needed) a PostgreSQL datastore. Throws
 * ERR_CONFIG_INVALID for bad options (reason `password-in-connection-string`, …),
 * ERR_UNAVAILABLE (`datastore-unavailable`, `datastore-busy`) when the server cannot be
 * reached or another server's migration outlasts the wait, ERR_FAILED_PRECONDITION with
 * reason `schema-too-new` for a schema written by a newer Sigil and `datastore-open-failed`
 * when PostgreSQL refuses (authentication, missing database, privileges), and
 * ERR_CONFIG_INVALID `datastore-tls` when TLS cannot be agreed (sslmode=require against a
 * server without TLS, a certificate that does not verify).
 */
export async function openPostgresDatastore(options: PostgresDatastoreOptions, signal?: AbortSignal): Promise<PostgresDatastore> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger();
  const schema = options.schema ?? DEFAULT_SCHEMA;
  if (typeof schema !== 'string' || !SCHEMA_RE.test(schema)) {
    throw configInvalid('invalid-schema', `datastore schema ${JSON.stringify(String(schema))} must be lowercase letters, digits and _`);
  }
  const config = poolConfig(options, schema, logger);
  const where = describe(config, schema);
  const driver = new PostgresDriver({
    pool: config,
    schema,
    logger,
    lockTimeoutMs: positiveMs(options.lockTimeoutMs, DEFAULT_LOCK_TIMEOUT_MS, 'lockTimeoutMs'),
  });
  try {
    const migrationWait = positiveMs(options.migrationLockTimeoutMs, DEFAULT_MIGRATION_LOCK_TIMEOUT_MS, 'migrationLockTimeoutMs');
    const { from, to } = await driver.withMigrationLock(
      migrationWait,
      async () => {
        // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
        const found = await driver.queryOutside('SELECT 1 AS found FROM pg_namespace WHERE nspname = $1', [schema]);
        if (found.length === 0) await driver.queryOutside(`CREATE SCHEMA ${schema}`);
        return migrate(driver, POSTGRES_MIGRATIONS, clock.nowMs());
      },
      signal,
    );
    if (from !== to) logger.info({ ...where, from, to }, 'datastore schema migrated');
    logger.debug({ ...where, schemaVersion: to }, 'datastore opened');
    return new PostgresDatastore(schema, driver, { clock, logger, schemaVersion: to });
  } catch (err) {
    await driver.close();
    if (isSigilError(err, 'ERR_UNAVAILABLE') && err.reason === 'datastore-tls') {
      // sslmode or the certificates disagree with the server: waiting for it cannot fix that
      throw configInvalid('datastore-tls', `cannot open datastore ${String(where['database'])} on ${String(where['host'])}: TLS failed: ${tlsProblemOf(err.cause)} (check sslmode and the ssl settings of connectionString)`, err.cause);
    }
    if (isSigilError(err)) throw err;
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && OPEN_FAILED_CLASSES.some((c) => code.startsWith(c))) {
      throw new SigilError('ERR_FAILED_PRECONDITION', `cannot open datastore ${String(where['database'])} on ${String(where['host'])}: ${refusalOf(err, code)}`, {
        reason: 'datastore-open-failed',
        cause: err,
      });
    }
    logger.error({ err, ...where }, 'datastore open failed');
    throw new SigilError('ERR_INTERNAL', 'cannot open datastore', { reason: 'datastore-error', cause: err });
  }
}
