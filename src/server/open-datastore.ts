/**
 * Opening the server's datastore as a service does it. SQLite is a local file: it opens or the
 * server cannot run. PostgreSQL is another service that may not be up yet (both started at boot,
 * a failover in progress, the database restarting): while it cannot be reached (ERR_UNAVAILABLE:
 * connection refused or lost, timed out, shutting down or starting up, too many connections, or
 * another server's migration outlasting the wait) the server logs one line per attempt and tries
 * again with jittered backoff, capped at 30 s, for as long as it runs; a stop aborts the wait at
 * once. What waiting cannot fix fails at once: a bad connection string or option, TLS that
 * cannot be agreed (sslmode=require against a server without TLS, a certificate that does not
 * verify: ERR_CONFIG_INVALID), a refusal by PostgreSQL by its error class (28 authentication, 3D no such
 * database, 42 no privilege: ERR_FAILED_PRECONDITION `datastore-open-failed`), a schema from a
 * newer Sigil, anything unexpected.
 */
import { Backoff } from '../common/backoff.js';
import type { Clock } from '../common/clock.js';
import { isSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';
import type { Datastore } from '../datastore/datastore.js';
import { openPostgresDatastore, postgresLocation } from '../datastore/postgres/postgres-datastore.js';
import { openSqliteDatastore } from '../datastore/sqlite/sqlite-datastore.js';
import type { ServerConfig } from './config.js';

/** First wait after a failed attempt to reach PostgreSQL (jittered to half of it up to it). */
export const DATASTORE_RETRY_INITIAL_MS = 1000;
/** Longest wait between two attempts. */
export const DATASTORE_RETRY_MAX_MS = 30_000;

/** Options of openServerDatastore. */
export interface OpenServerDatastoreOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Random source of the retry jitter (tests). */
  readonly random?: () => number;
}

/**
 * Opens the configured datastore, waiting for PostgreSQL while it is unreachable; rejects with
 * what waiting cannot fix, or with `signal`'s reason once it aborts.
 */
export async function openServerDatastore(config: ServerConfig, options: OpenServerDatastoreOptions, signal?: AbortSignal): Promise<Datastore> {
  const { clock, logger } = options;
  signal?.throwIfAborted();
  const pg = config.datastore.postgres;
  if (config.datastore.type !== 'postgres' || pg === undefined) return openSqliteDatastore({ path: config.datastore.sqlitePath, clock, logger });
  const backoff = new Backoff({ initialMs: DATASTORE_RETRY_INITIAL_MS, maxMs: DATASTORE_RETRY_MAX_MS, ...(options.random === undefined ? {} : { random: options.random }) });
  const where = postgresLocation(pg);
  for (let attempt = 1; ; attempt++) {
    try {
      const ds = await openPostgresDatastore({ ...pg, clock, logger }, signal);
      if (attempt > 1) logger.info({ ...where, attempts: attempt }, 'datastore reached');
      return ds;
    } catch (err) {
      signal?.throwIfAborted();
      if (!isSigilError(err, 'ERR_UNAVAILABLE')) throw err;
      const delay = backoff.next();
      const msg = err.reason === 'datastore-busy' ? 'datastore busy; retrying' : 'datastore unreachable; retrying';
      logRetry(logger, err, { ...where, attempt, retryInMs: delay }, msg);
      await clock.sleep(delay, signal);
    }
  }
}
