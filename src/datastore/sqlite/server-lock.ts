/**
 * One server per SQLite file. SQLite is the single-server datastore: two servers on one file
 * would each run their own CA lifecycle and entry event cursor over it. The server holds an
 * exclusive SQLite lock (an open `BEGIN EXCLUSIVE` transaction, so a POSIX lock the kernel drops
 * when the process dies, even by kill -9) on a side file `<datastore>.lock` for as long as it
 * runs; a second server finds it taken at once and is refused with a message that says to use
 * PostgreSQL. The datastore file itself stays open to the usual readers.
 */
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { SigilError } from '../../common/errors.js';

/** The lock a running server holds on its SQLite datastore. */
export interface SqliteServerLock {
  /** The side file that carries the lock. */
  readonly path: string;
  /** Releases the lock (idempotent). */
  release(): void;
}

/** Takes the server lock of the SQLite datastore at `datastorePath`; ERR_FAILED_PRECONDITION `datastore-in-use` when another server holds it. */
export function lockSqliteForServer(datastorePath: string): SqliteServerLock {
  const path = `${datastorePath}.lock`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, 'a', 0o600));
  } catch (err) {
    throw new SigilError('ERR_FAILED_PRECONDITION', `cannot create the datastore lock file ${path}`, { reason: 'datastore-open-failed', cause: err });
  }
  const db = new Database(path, { timeout: 0 });
  try {
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new SigilError(
        'ERR_FAILED_PRECONDITION',
        `the SQLite datastore ${datastorePath} is in use by another server: SQLite serves one server only. ` +
          'To run several servers, give each its own data dir and point them all at one PostgreSQL database (datastore.type: postgres; docs/operations.md, "Running several servers")',
        { reason: 'datastore-in-use' },
      );
    }
    throw new SigilError('ERR_FAILED_PRECONDITION', `cannot lock the datastore lock file ${path}`, { reason: 'datastore-open-failed', cause: err });
  }
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      db.close();
    },
  };
}
