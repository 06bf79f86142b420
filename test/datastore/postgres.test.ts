/**
 * The PostgreSQL datastore against the real server at 127.0.0.1:5432 (database `test`;
 * scripts/ci-prepare.sh starts it). Every store lives in its own schema named after this
 * run, dropped when the test ends; only schemas with this run's prefix are ever touched.
 * An unreachable server fails the file: it is never skipped.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ManualClock } from '../../src/common/clock.js';
import { SigilError, type ErrorCode } from '../../src/common/errors.js';
import { memoryLogger, silentLogger } from '../../src/common/logger.js';
import type { NewRegistrationEntry } from '../../src/datastore/datastore.js';
import { POSTGRES_MIGRATIONS } from '../../src/datastore/postgres/migrations.js';
import { openPostgresDatastore, type PostgresDatastore, type PostgresDatastoreOptions } from '../../src/datastore/postgres/postgres-datastore.js';
import { PostgresDriver, schemaLockKey } from '../../src/datastore/postgres/postgres-driver.js';
import { toPositionalSql } from '../../src/datastore/postgres/positional-sql.js';
import { datastoreConformance } from './conformance.js';

// Tests may read the environment: only the config loader of the product may not.
const URL = process.env['SIGIL_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
/** Every schema this file creates starts with this; nothing else is ever dropped. */
const RUN = `sigil_t${process.pid}_${randomBytes(3).toString('hex')}`;
let schemas = 0;

function newSchema(): string {
  schemas++;
  return `${RUN}_${schemas}`;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: URL, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function dropSchema(schema: string): Promise<void> {
  if (!schema.startsWith(`${RUN}_`)) throw new Error(`refusing to drop ${schema}: not made by this test run`);
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}

test.before(async () => {
  try {
    await withAdmin((c) => c.query('SELECT 1'));
  } catch (err) {
    throw new Error(
      `PostgreSQL is not reachable at ${URL} (${(err as Error).message}): these tests need it; scripts/ci-prepare.sh starts it`,
    );
  }
});

test.after.always(async () => {
  // Leftovers of tests that failed before their own cleanup; the prefix is unique to this run.
  await withAdmin(async (c) => {
    const { rows } = await c.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [`${RUN}_`]);
    for (const r of rows) await c.query(`DROP SCHEMA IF EXISTS ${r.nspname} CASCADE`);
  });
});

/** Bounds how many stores (each with its own pool) are open at once, so the server's connection limit is never near. */
const slots = { free: 6, waiters: [] as (() => void)[] };
async function acquireSlot(): Promise<() => void> {
  if (slots.free > 0) slots.free--;
  else await new Promise<void>((resolve) => slots.waiters.push(resolve));
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const next = slots.waiters.shift();
    if (next !== undefined) next();
    else slots.free++;
  };
}

datastoreConformance('postgres', async ({ clock }) => {
  const release = await acquireSlot();
  const schema = newSchema();
  try {
    const ds = await openPostgresDatastore({ connectionString: URL, schema, clock, logger: silentLogger(), maxConnections: 3 });
    return {
      ds,
      cleanup: async () => {
        await ds.close();
        await dropSchema(schema);
        release();
      },
    };
  } catch (err) {
    release();
    throw err;
  }
});

/** Opens a store on `schema` (a fresh one by default) and closes it (and drops the schema) when the test ends. */
async function open(t: ExecutionContext, over: Partial<PostgresDatastoreOptions> = {}): Promise<PostgresDatastore> {
  const release = await acquireSlot();
  t.teardown(release);
  const schema = over.schema ?? newSchema();
  const ds = await openPostgresDatastore({ connectionString: URL, clock: new ManualClock(), maxConnections: 3, ...over, schema });
  t.teardown(async () => {
    await ds.close();
    if (over.schema === undefined) await dropSchema(schema);
  });
  return ds;
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: ErrorCode, reason: string): Promise<SigilError> {
  const err = await t.throwsAsync(p, { instanceOf: SigilError });
  t.is(err?.code, code);
  t.is(err?.reason, reason);
  return err as SigilError;
}

function entry(i: number): NewRegistrationEntry {
  return {
    spiffeId: `spiffe://example.org/workload/${i}`,
    parentId: 'spiffe://example.org/agent',
    selectors: [{ type: 'unix', value: `uid:${i}` }],
    x509SvidTtlSeconds: 0,
    jwtSvidTtlSeconds: 0,
    dnsNames: [],
    federatesWith: [],
    admin: false,
    downstream: false,
    hint: '',
    entryExpiresAt: 0,
  };
}

// ------------------------------------------------------------------ placeholder rewrite

test('? becomes $n outside quotes and comments', (t) => {
  t.deepEqual(toPositionalSql('SELECT a FROM t WHERE a = ? AND b IN (SELECT v FROM f(?::json)) LIMIT ?'), {
    text: 'SELECT a FROM t WHERE a = $1 AND b IN (SELECT v FROM f($2::json)) LIMIT $3',
    params: 3,
  });
  t.deepEqual(toPositionalSql(`SELECT '?', 'it''s ?', "col?" FROM t -- a ? here\nWHERE x = ? /* and ? */ AND y = ?`), {
    text: `SELECT '?', 'it''s ?', "col?" FROM t -- a ? here\nWHERE x = $1 /* and ? */ AND y = $2`,
    params: 2,
  });
  t.deepEqual(toPositionalSql('SELECT 1'), { text: 'SELECT 1', params: 0 });
});

// ------------------------------------------------------------------ opening and migrations

test('opening creates the schema, migrates it, and reopening migrates nothing', async (t) => {
  const schema = newSchema();
  t.teardown(() => dropSchema(schema));
  const first = memoryLogger('info');
  const ds = await openPostgresDatastore({ connectionString: URL, schema, logger: first.logger });
  t.is(ds.schemaVersion, POSTGRES_MIGRATIONS.length);
  t.is(ds.schema, schema);
  await ds.close();
  t.is(first.lines.filter((l) => (JSON.parse(l) as { msg: string }).msg === 'datastore schema migrated').length, 1);
  t.false(first.lines.join('').includes('postgres://'), 'the connection string is never logged');

  const second = memoryLogger('info');
  const again = await openPostgresDatastore({ connectionString: URL, schema, logger: second.logger });
  await again.close();
  t.is(second.lines.filter((l) => (JSON.parse(l) as { msg: string }).msg === 'datastore schema migrated').length, 0);

  await withAdmin(async (c) => {
    const tables = (await c.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [schema])).rows.map(
      (r) => r.tablename,
    );
    t.deepEqual(tables, [
      'attested_nodes',
      'audit_cursors',
      'audit_records',
      'bundles',
      'entry_events',
      'entry_federates_with',
      'entry_selectors',
      'federation_relationships',
      'join_tokens',
      'node_selectors',
      'registered_entries',
      'schema_version',
      'server_ca_journals',
    ]);
    const versions = (await c.query<{ version: number }>(`SELECT version FROM ${schema}.schema_version ORDER BY version`)).rows.map((r) => r.version);
    t.deepEqual(versions, POSTGRES_MIGRATIONS.map((m) => m.version));
  });
});

test('servers starting together migrate once, one after another', async (t) => {
  const schema = newSchema();
  t.teardown(() => dropSchema(schema));
  const logs = Array.from({ length: 4 }, () => memoryLogger('info'));
  const stores = await Promise.all(logs.map((l) => openPostgresDatastore({ connectionString: URL, schema, logger: l.logger, maxConnections: 2 })));
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  const migrated = logs.flatMap((l) => l.lines).filter((l) => (JSON.parse(l) as { msg: string }).msg === 'datastore schema migrated');
  t.is(migrated.length, 1, 'exactly one server ran the migrations');
  for (const s of stores) t.is(s.schemaVersion, POSTGRES_MIGRATIONS.length);
  const count = await withAdmin(async (c) => (await c.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${schema}.schema_version`)).rows[0]?.n);
  t.is(Number(count), POSTGRES_MIGRATIONS.length);
  // All four work on the one schema.
  await Promise.all(stores.map((s, i) => s.createEntry(entry(i))));
  t.is(await stores[0]?.countEntries(), 4);
});

test('a schema written by a newer sigil is refused and left untouched', async (t) => {
  const ds = await open(t);
  await ds.createEntry(entry(1));
  await withAdmin((c) => c.query(`INSERT INTO ${ds.schema}.schema_version (version, applied_at) VALUES ($1, 0)`, [POSTGRES_MIGRATIONS.length + 1]));
  await rejects(t, openPostgresDatastore({ connectionString: URL, schema: ds.schema }), 'ERR_FAILED_PRECONDITION', 'schema-too-new');
  const max = await withAdmin(async (c) => (await c.query<{ v: number }>(`SELECT MAX(version) AS v FROM ${ds.schema}.schema_version`)).rows[0]?.v);
  t.is(max, POSTGRES_MIGRATIONS.length + 1);
  t.is(await ds.countEntries(), 1);
});

test('schemas are isolated from each other', async (t) => {
  const a = await open(t);
  const b = await open(t);
  await a.createEntry(entry(1));
  await a.setBundle('spiffe://example.org', '{"keys":[]}');
  t.is(await b.countEntries(), 0);
  t.is(await b.getBundle('spiffe://example.org'), undefined);
  // And the lock keys differ, so one schema's writers never wait for another's.
  t.not(schemaLockKey(a.schema), schemaLockKey(b.schema));
});

// ------------------------------------------------------------------ options

test('bad options are refused before connecting, without echoing a password', async (t) => {
  const err = await rejects(
    t,
    openPostgresDatastore({ connectionString: 'postgres://sigil:hunter2-secret@127.0.0.1:5432/test' }),
    'ERR_CONFIG_INVALID',
    'password-in-connection-string',
  );
  t.false(err.message.includes('hunter2-secret'));
  await rejects(t, openPostgresDatastore({ connectionString: URL, schema: 'Bad-Schema' }), 'ERR_CONFIG_INVALID', 'invalid-schema');
  await rejects(t, openPostgresDatastore({ connectionString: URL, schema: 'x; DROP TABLE y' }), 'ERR_CONFIG_INVALID', 'invalid-schema');
  await rejects(t, openPostgresDatastore({ connectionString: '' }), 'ERR_CONFIG_INVALID', 'invalid-connection-string');
  await rejects(t, openPostgresDatastore({ connectionString: URL, maxConnections: 1 }), 'ERR_CONFIG_INVALID', 'invalid-datastore-option');
  await rejects(t, openPostgresDatastore({ connectionString: URL, lockTimeoutMs: 0 }), 'ERR_CONFIG_INVALID', 'invalid-datastore-option');
});

test('the password comes from a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-pg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await rejects(t, openPostgresDatastore({ connectionString: URL, passwordFile: join(dir, 'absent') }), 'ERR_CONFIG_INVALID', 'password-file-unreadable');
  writeFileSync(join(dir, 'empty'), '\n', { mode: 0o600 });
  await rejects(t, openPostgresDatastore({ connectionString: URL, passwordFile: join(dir, 'empty') }), 'ERR_CONFIG_INVALID', 'password-file-empty');
  // The test server trusts loopback, so any password is accepted: this checks the file is read and used, not authentication.
  const path = join(dir, 'password');
  writeFileSync(path, 'not-a-real-password\n', { mode: 0o600 });
  const { logger, lines } = memoryLogger('debug');
  const ds = await open(t, { passwordFile: path, logger });
  await ds.createEntry(entry(1));
  t.is(await ds.countEntries(), 1);
  t.false(lines.join('').includes('not-a-real-password'));
});

test('an unreachable server is ERR_UNAVAILABLE, a missing database ERR_FAILED_PRECONDITION', async (t) => {
  // Port 1 on loopback: nothing listens there, so the connect is refused at once.
  await rejects(t, openPostgresDatastore({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectTimeoutMs: 2000 }), 'ERR_UNAVAILABLE', 'datastore-unavailable');
  await rejects(
    t,
    openPostgresDatastore({ connectionString: URL.replace(/\/test$/, '/sigil_no_such_database'), schema: newSchema() }),
    'ERR_FAILED_PRECONDITION',
    'datastore-open-failed',
  );
});

test('TLS the server does not offer is a configuration error at open, not an outage to wait out', async (t) => {
  // the test PostgreSQL has no TLS; pg says "The server does not support SSL connections", with no code
  const url = `${URL}${URL.includes('?') ? '&' : '?'}sslmode=require`;
  await rejects(t, openPostgresDatastore({ connectionString: url, schema: newSchema() }), 'ERR_CONFIG_INVALID', 'datastore-tls');
});

// ------------------------------------------------------------------ several servers on one schema

test('two servers spending the same join tokens for different agent keys: exactly one wins each', async (t) => {
  const a = await open(t);
  const b = await open(t, { schema: a.schema });
  const hashes = Array.from({ length: 20 }, (_, i) => i.toString(16).padStart(64, 'e'));
  for (const [i, tokenHash] of hashes.entries()) await a.createJoinToken({ tokenId: `t${i}`, tokenHash, expiresAt: 1 });
  const node = (i: number) => ({
    spiffeId: `spiffe://example.org/sigil/agent/join_token/t${i}`,
    attestationType: 'join_token',
    certSerial: '01',
    certNotAfter: 1,
    newCertSerial: '',
    newCertNotAfter: 0,
    selectors: [{ type: 'join_token', value: `id:t${i}` }],
    banned: false,
    canReattest: false,
  });
  for (const [i, tokenHash] of hashes.entries()) {
    const keys = ['a', 'b', 'c', 'd'].map((k) => k.repeat(64));
    const results = await Promise.allSettled([a, b, a, b].map((s, j) => s.admitAttestedNode({ node: node(i), joinToken: { tokenHash, agentKey: keys[j] as string } })));
    t.is(results.filter((r) => r.status === 'fulfilled').length, 1, `token ${tokenHash.slice(0, 8)} spent once`);
  }
  t.true((await b.listJoinTokens()).every((tok) => tok.spentBy !== ''));
  t.is(await b.countAttestedNodes(), hashes.length);
});

test('duplicate checks hold across servers: concurrent createEntryIfNotExists creates one', async (t) => {
  const a = await open(t);
  const b = await open(t, { schema: a.schema });
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).createEntryIfNotExists(entry(7))));
  t.is(results.filter((r) => r.created).length, 1);
  t.is(new Set(results.map((r) => r.entry.id)).size, 1);
  const plain = await Promise.allSettled([a.createEntry(entry(8)), b.createEntry(entry(8))]);
  t.is(plain.filter((r) => r.status === 'fulfilled').length, 1);
  const failed = plain.find((r) => r.status === 'rejected');
  t.is((failed?.reason as SigilError | undefined)?.code, 'ERR_ALREADY_EXISTS');
});

test('a reader that remembers the last event id misses nothing while two servers write', async (t) => {
  const a = await open(t);
  const b = await open(t, { schema: a.schema });
  const reader = await open(t, { schema: a.schema });
  const seen: number[] = [];
  let writing = true;
  const read = (async () => {
    let last = 0;
    for (;;) {
      const done = !writing;
      const events = await reader.listEntryEvents(last, 50);
      for (const e of events) seen.push(e.eventId);
      if (events.length > 0) last = events[events.length - 1]?.eventId ?? last;
      if (done && events.length === 0) return;
    }
  })();
  const write = async (s: PostgresDatastore, base: number): Promise<void> => {
    // Several writes in flight per server, so transactions really overlap.
    await Promise.all(
      Array.from({ length: 4 }, async (_, lane) => {
        for (let i = 0; i < 15; i++) {
          const e = await s.createEntry(entry(base + lane * 100 + i));
          if (i % 3 === 0) await s.updateEntry({ ...e, hint: 'x' });
        }
      }),
    );
  };
  await Promise.all([write(a, 0), write(b, 10_000)]);
  writing = false;
  await read;
  const all = (await reader.listEntryEvents(0, 10_000)).map((e) => e.eventId);
  t.is(all.length, 2 * 4 * (15 + 5));
  t.deepEqual(seen, all, 'the reader saw every event once, in id order');
});

test('a second server cannot draw an event id while another write is open, so ids become visible in order', async (t) => {
  const ds = await open(t);
  const driverFor = (): PostgresDriver =>
    new PostgresDriver({
      pool: { connectionString: URL, options: `-c search_path=${ds.schema}`, max: 2 },
      schema: ds.schema,
      logger: silentLogger(),
      lockTimeoutMs: 10_000,
    });
  const one = driverFor();
  const two = driverFor();
  t.teardown(() => Promise.all([one.close(), two.close()]));
  const insert = 'INSERT INTO entry_events (entry_id, kind, at) VALUES (?, ?, ?) RETURNING event_id';
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let firstInserted!: () => void;
  const inserted = new Promise<void>((resolve) => (firstInserted = resolve));
  const first = one.transaction('write', async (tx) => {
    const id = Number((await tx.all(insert, ['first', 'created', 1]))[0]?.['event_id']);
    firstInserted();
    await held;
    return id;
  });
  await inserted;
  let secondDone = false;
  const second = two.transaction('write', async (tx) => Number((await tx.all(insert, ['second', 'created', 2]))[0]?.['event_id'])).then((id) => {
    secondDone = true;
    return id;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.false(secondDone, 'the second writer waits for the first');
  t.deepEqual(await ds.listEntryEvents(0), [], 'nothing is visible while the first is open');
  release();
  const [firstId, secondId] = await Promise.all([first, second]);
  t.true(secondId > firstId);
  t.deepEqual(
    (await ds.listEntryEvents(0)).map((e) => [e.eventId, e.entryId]),
    [
      [firstId, 'first'],
      [secondId, 'second'],
    ],
  );
});

test('a write lock held past lockTimeoutMs is ERR_UNAVAILABLE datastore-busy; reads go on', async (t) => {
  const ds = await open(t, { lockTimeoutMs: 200 });
  await ds.createEntry(entry(1));
  const holder = new pg.Client({ connectionString: URL });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock($1, $2)', [0x5349474c, schemaLockKey(ds.schema)]);
  await rejects(t, ds.createEntry(entry(2)), 'ERR_UNAVAILABLE', 'datastore-busy');
  t.is(await ds.countEntries(), 1);
  await holder.query('ROLLBACK');
  await ds.createEntry(entry(2));
  t.is(await ds.countEntries(), 2);
});

// ------------------------------------------------------------------ connection loss

/** Ends the server sessions of one store (only those waiting on a lock when `waiting`), as an administrator or a failover would. */
async function terminate(applicationName: string, waiting = false): Promise<number> {
  return withAdmin(async (c) => {
    const { rows } = await c.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1${waiting ? " AND wait_event_type = 'Lock'" : ''}`,
      [applicationName],
    );
    return rows.filter((r) => r.ok).length;
  });
}

/** Runs `call`; a failure must be ERR_UNAVAILABLE, and the call after it must work. */
async function survives<T>(t: ExecutionContext, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    t.true(err instanceof SigilError && err.code === 'ERR_UNAVAILABLE', `failed with ${(err as SigilError).code ?? String(err)}`);
    return call();
  }
}

test('after the server ends the connections, the next call works or fails ERR_UNAVAILABLE and the one after works', async (t) => {
  const app = `sigil_test_${randomBytes(4).toString('hex')}`;
  const ds = await open(t, { connectionString: `${URL}?application_name=${app}` });
  await Promise.all([ds.createEntry(entry(1)), ds.countEntries(), ds.countEntries()]);
  t.true((await terminate(app)) >= 1, 'pooled connections were terminated');
  t.is(await survives(t, () => ds.countEntries()), 1);
  await terminate(app);
  await survives(t, () => ds.createEntry(entry(2)));
  t.is(await ds.countEntries(), 2);
  await terminate(app);
  t.is(await survives(t, () => ds.getJoinToken('0'.repeat(64))), undefined);
});

test('a connection ended in the middle of a write fails that write with ERR_UNAVAILABLE and nothing half-done remains', async (t) => {
  const app = `sigil_test_${randomBytes(4).toString('hex')}`;
  const ds = await open(t, { connectionString: `${URL}?application_name=${app}` });
  const ready = await open(t, { schema: ds.schema });
  await ds.createEntry(entry(1));
  // Block event inserts elsewhere so the write is parked inside its transaction, after its entry row, then end its connection.
  const holder = new pg.Client({ connectionString: URL });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query(`LOCK TABLE ${ds.schema}.entry_events IN EXCLUSIVE MODE`);
  const write = ds.createEntry(entry(2));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.true((await terminate(app)) >= 1);
  await rejects(t, write, 'ERR_UNAVAILABLE', 'datastore-unavailable');
  await holder.query('ROLLBACK');
  t.is(await ready.countEntries(), 1);
  await ds.createEntry(entry(3));
  t.is(await ready.countEntries(), 2);
});

test('a read whose connection is ended mid-statement is retried once on a new connection', async (t) => {
  const app = `sigil_test_${randomBytes(4).toString('hex')}`;
  const { logger, lines } = memoryLogger('debug');
  const ds = await open(t, { connectionString: `${URL}?application_name=${app}`, logger });
  await ds.createEntry(entry(1));
  // Park the read on a table lock so its connection can be ended while the statement runs.
  const holder = new pg.Client({ connectionString: URL });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query(`LOCK TABLE ${ds.schema}.registered_entries IN ACCESS EXCLUSIVE MODE`);
  const read = ds.countEntries();
  await new Promise((resolve) => setTimeout(resolve, 200));
  // Only the parked session: ending the idle ones too could let the retry land on one about to be ended.
  t.is(await terminate(app, true), 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await holder.query('ROLLBACK');
  t.is(await read, 1);
  t.true(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'datastore connection lost, retrying on a new one'));
});

test('opening waits for another server migrating, up to migrationLockTimeoutMs, and can be cancelled', async (t) => {
  const schema = newSchema();
  t.teardown(() => dropSchema(schema));
  const holder = new pg.Client({ connectionString: URL });
  await holder.connect();
  t.teardown(() => holder.end());
  // The migration lock as another server holds it while migrating.
  await holder.query('SELECT pg_advisory_lock($1, $2)', [0x5349474d, schemaLockKey(schema)]);
  await rejects(t, openPostgresDatastore({ connectionString: URL, schema, migrationLockTimeoutMs: 300 }), 'ERR_UNAVAILABLE', 'datastore-busy');
  await rejects(t, openPostgresDatastore({ connectionString: URL, schema }, AbortSignal.timeout(200)), 'ERR_CANCELLED', 'cancelled');
  const waiting = openPostgresDatastore({ connectionString: URL, schema });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await holder.query('SELECT pg_advisory_unlock($1, $2)', [0x5349474d, schemaLockKey(schema)]);
  const ds = await waiting;
  t.is(ds.schemaVersion, POSTGRES_MIGRATIONS.length);
  await ds.close();
});

test('watchChanges: a write through another server wakes the listener with its kind (LISTEN/NOTIFY), once per transaction', async (t) => {
  const schema = newSchema();
  t.teardown(() => dropSchema(schema));
  const one = await openPostgresDatastore({ connectionString: URL, schema, logger: silentLogger() });
  const two = await openPostgresDatastore({ connectionString: URL, schema, logger: silentLogger() });
  t.teardown(async () => {
    await one.close();
    await two.close();
  });
  const heard: string[] = [];
  const stop = await one.watchChanges((c) => heard.push(c));
  const until = async (what: string, cond: () => boolean): Promise<void> => {
    const end = Date.now() + 15_000;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${heard.join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await two.createEntries([0, 1, 2].map((i) => entry(i)));
  await until('entries', () => heard.includes('entries'));
  t.is(heard.filter((c) => c === 'entries').length, 1, 'one notification for the one transaction of three entries');
  await two.setCaJournal('spiffe://example.org', 'srv-b', new Uint8Array([1]));
  await until('bundles', () => heard.includes('bundles'));
  stop();
  const count = heard.length;
  await two.setCaJournal('spiffe://example.org', 'srv-b', new Uint8Array([2]));
  await two.createEntry(entry(10));
  // a marker through a fresh listener shows the notifications were sent; the stopped one heard none
  const marker: string[] = [];
  const stop2 = await one.watchChanges((c) => marker.push(c));
  await two.createEntry(entry(11));
  const end = Date.now() + 15_000;
  while (!marker.includes('entries') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  stop2();
  t.true(marker.includes('entries'));
  t.is(heard.length, count);
});
