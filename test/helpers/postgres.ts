/**
 * The test PostgreSQL (127.0.0.1:5432, trust auth, database `test`, started by
 * scripts/ci-prepare.sh) for tests that run servers on it: its URL, an admin connection, and
 * schema names unique to one test file's process, dropped after its tests.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

// Tests may read the environment: only the product's config loader may not.
export const POSTGRES_URL = process.env['SIGIL_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Runs `fn` on a fresh admin connection to the test database. */
export async function withPostgres<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/**
 * A schema name `<tag><pid>_<random>` for this test file; it and every schema whose name starts
 * with it (a test may add suffixes for more) are dropped after the file's tests. Call once, at
 * the top level of a test file.
 */
export function testSchemaPrefix(tag: string): string {
  const prefix = `${tag}${process.pid}_${randomBytes(3).toString('hex')}`;
  test.after.always(async () => {
    await withPostgres(async (c) => {
      const r = await c.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [prefix]);
      for (const { nspname } of r.rows) await c.query(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`);
    });
  });
  return prefix;
}
