/**
 * The server on the PostgreSQL datastore (127.0.0.1:5432, database `test`; scripts/ci-prepare.sh
 * starts it): entries, agents and the CA survive a restart, exactly as on SQLite. Each test
 * uses its own schema, dropped at the end. An unreachable PostgreSQL fails the file.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { systemClock } from '../../src/common/clock.js';
import { SigilError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { openPostgresDatastore } from '../../src/datastore/postgres/postgres-datastore.js';
import { resolveServerConfig } from '../../src/server/config.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';

// Tests may read the environment: only the product's config loader may not.
const URL = process.env['SIGIL_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = `sigil_srv${process.pid}_${randomBytes(3).toString('hex')}`;

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: URL, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

test.before(async () => {
  try {
    await withAdmin((c) => c.query('SELECT 1'));
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at ${URL} (${(err as Error).message}): scripts/ci-prepare.sh starts it`);
  }
});

test.after.always(async () => {
  await withAdmin(async (c) => {
    const r = await c.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [`${RUN}%`]);
    for (const { nspname } of r.rows) await c.query(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`);
  });
});

test('a server on PostgreSQL keeps its entries and CA across a restart', async (t) => {
  const dir = await makeServerDir();
  const config = { datastore: { type: 'postgres', connectionString: URL, schema: `${RUN}_a`, maxConnections: 4 } };
  const started: Array<{ destroy(): Promise<void> }> = [];
  t.teardown(async () => {
    for (const s of started.reverse()) await s.destroy();
  });
  const first = await startTestServer({ dir, config });
  started.push(first);
  t.is(first.config.datastore.type, 'postgres');
  const id = await first.createEntry({ spiffeId: 'spiffe://example.org/pg/web', parentId: 'spiffe://example.org/sigil/agent/x', selectors: ['unix:uid:1000'] });
  const roots = first.server.x509Authorities();
  await first.stop();

  // Nothing of the datastore lives in the data dir: the rows are in PostgreSQL.
  const rows = await withAdmin((c) => c.query<{ spiffe_id: string }>(`SELECT spiffe_id FROM ${RUN}_a.registered_entries`));
  t.deepEqual(rows.rows.map((r) => r.spiffe_id), ['spiffe://example.org/pg/web']);

  const second = await startTestServer({ dir, config });
  started.push(second);
  t.deepEqual(second.server.x509Authorities(), roots, 'same CA after restart');
  const shown = await second.admin.call<{ id: string; spiffe_id: string }>('Entries', 'GetEntry', { id });
  t.is(shown.spiffe_id, 'spiffe://example.org/pg/web');
});

test('datastore config: postgres needs a connection string, and sqlite-only or postgres-only keys are refused by name', (t) => {
  const base = { trustDomain: 'example.org', dataDir: '/tmp/x', keyManager: { type: 'memory' } };
  const missing = t.throws(() => resolveServerConfig({ ...base, datastore: { type: 'postgres' } }), { instanceOf: SigilError });
  t.is(missing?.code, 'ERR_CONFIG_INVALID');
  t.true(missing?.message.includes('datastore.connectionString'));
  const mixed = t.throws(() => resolveServerConfig({ ...base, datastore: { connectionString: URL, schema: 's' } }), { instanceOf: SigilError });
  t.true(mixed?.message.includes('datastore.connectionString') && mixed.message.includes('datastore.schema'));
  const unknown = t.throws(() => resolveServerConfig({ ...base, datastore: { type: 'mysql' } }), { instanceOf: SigilError });
  t.true(unknown?.message.includes('datastore.type'));
  const ok = resolveServerConfig({ ...base, datastore: { type: 'postgres', connectionString: URL, passwordFile: 'pw' } }, {}, '/etc/sigil');
  t.is(ok.datastore.postgres?.passwordFile, '/etc/sigil/pw');
  t.is(resolveServerConfig(base).datastore.type, 'sqlite');
});

test('on PostgreSQL too, committed changes are shipped with seq and auditId, and a restart ships what was owed', async (t) => {
  const dir = await makeServerDir();
  const schema = `${RUN}_audit`;
  const config = { datastore: { type: 'postgres', connectionString: URL, schema, maxConnections: 4 } };
  const first = await startTestServer({ dir, config });
  t.teardown(() => first.destroy());
  const id = await first.createEntry({ spiffeId: 'spiffe://example.org/pg/a', parentId: 'spiffe://example.org/node', selectors: ['unix:uid:1'] });
  const shipped = first.auditLines.map((l) => JSON.parse(l) as { action: string; entryId?: string; seq?: number; auditId?: string }).filter((l) => l.seq !== undefined);
  t.deepEqual(shipped.map((l) => [l.action, l.entryId]), [['entry.create', id]]);
  await first.stop();
  // committed with its record by a process that died before shipping it
  const ds = await openPostgresDatastore({ connectionString: URL, schema, clock: systemClock, logger: silentLogger(), maxConnections: 2 });
  const { entry } = await ds.createEntryIfNotExists(
    { spiffeId: 'spiffe://example.org/pg/b', parentId: 'spiffe://example.org/node', selectors: [{ type: 'unix', value: 'uid:2' }], x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0 },
    (e) => ({ who: 'admin:uid:0', action: 'entry.create', result: 'ok', entryId: e.id }),
  );
  await ds.close();
  const second = await startTestServer({ dir, config });
  t.teardown(() => second.stop());
  const caught = second.auditLines.map((l) => JSON.parse(l) as { entryId?: string; seq?: number }).filter((l) => l.seq !== undefined);
  t.deepEqual(caught.map((l) => l.entryId), [entry.id]);
  t.true((caught[0]?.seq ?? 0) > (shipped[0]?.seq ?? 0));
});
