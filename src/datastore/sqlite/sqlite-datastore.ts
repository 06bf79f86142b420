/**
 * The embedded default datastore: one SQLite file in WAL mode (readers never block the
 * writer), foreign keys on, a busy timeout for the CLI or a second process touching the
 * same file. The file holds join token hashes and the CA journal, so it is created 0600
 * in a 0700 directory (SQLite gives its -wal and -shm files the database file's mode).
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { systemClock, type Clock } from '../../common/clock.js';
import { SigilError, isSigilError } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import { migrate } from '../sql/migrate.js';
import { SqlDatastore } from '../sql/sql-datastore.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { SqliteDriver } from './sqlite-driver.js';

/** Options of openSqliteDatastore. */
export interface SqliteDatastoreOptions {
  /** Database file path, or `:memory:` for a throwaway in-memory database. */
  readonly path: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** How long a statement waits for a lock held by another connection; default 5000 ms. */
  readonly busyTimeoutMs?: number;
}

/** Default time a statement waits for another connection's lock. */
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** A Datastore in one SQLite file. */
export class SqliteDatastore extends SqlDatastore {
  /** The database file path (absolute), or `:memory:`. */
  readonly path: string;

  constructor(path: string, driver: SqliteDriver, options: { clock: Clock; logger: Logger; schemaVersion: number }) {
    super(driver, options);
    this.path = path;
  }
}

function openFailed(path: string, err: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', `cannot open datastore ${path}`, { reason: 'datastore-open-failed', cause: err });
}

/** Creates the directory (0700) and an empty file (0600) when absent; warns when an existing file is open to others. */
function prepareFile(path: string, logger: Logger): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) logger.warn({ path, mode: mode.toString(8) }, 'datastore file is accessible to other users');
  }
}

/**
 * Opens (creating and migrating as needed) a SQLite datastore. Throws ERR_FAILED_PRECONDITION
 * with reason `schema-too-new` for a database written by a newer Sigil, `datastore-open-failed`
 * when the file cannot be created or is not a database.
 */
export async function openSqliteDatastore(options: SqliteDatastoreOptions): Promise<SqliteDatastore> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger();
  const memory = options.path === ':memory:';
  const path = memory ? options.path : resolve(options.path);
  let db: Database.Database;
  try {
    if (!memory) prepareFile(path, logger);
    db = new Database(path, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
  } catch (err) {
    throw openFailed(path, err);
  }
  const driver = new SqliteDriver(db);
  try {
    if (!memory) db.pragma('journal_mode = WAL');
    // NORMAL is durable across application crashes in WAL mode; only a power loss can lose the last commits.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // Bounds every ANALYZE that PRAGMA optimize runs to a sample, so refreshing statistics stays cheap.
    db.pragma('analysis_limit = 1000');
    if (db.pragma('foreign_keys', { simple: true }) !== 1) throw new Error('foreign keys could not be enabled');
    const { from, to } = await migrate(driver, SQLITE_MIGRATIONS, clock.nowMs());
    if (from !== to) logger.info({ path, from, to }, 'datastore schema migrated');
    // Long-lived connections should let SQLite gather statistics it lacks, once at open.
    db.pragma('optimize = 0x10002');
    logger.debug({ path, schemaVersion: to }, 'datastore opened');
    return new SqliteDatastore(path, driver, { clock, logger, schemaVersion: to });
  } catch (err) {
    // Closed directly: no work is queued yet, and a refused (newer) database must not be touched further.
    db.close();
    if (isSigilError(err)) throw err;
    throw openFailed(path, err);
  }
}
