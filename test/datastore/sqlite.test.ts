import test from 'ava';
import Database from 'better-sqlite3';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { SigilError } from '../../src/common/errors.js';
import { memoryLogger, silentLogger } from '../../src/common/logger.js';
import type { NewRegistrationEntry } from '../../src/datastore/datastore.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { SQLITE_MIGRATIONS } from '../../src/datastore/sqlite/migrations.js';
import { datastoreConformance } from './conformance.js';

function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-ds-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

datastoreConformance('sqlite', async ({ clock }) => {
  const { dir, remove } = tempDir();
  const ds = await openSqliteDatastore({ path: join(dir, 'datastore.sqlite3'), clock, logger: silentLogger() });
  return {
    ds,
    cleanup: async () => {
      await ds.close();
      remove();
    },
  };
});

function entry(i: number, parentId: string): NewRegistrationEntry {
  return {
    spiffeId: `spiffe://example.org/workload/${i}`,
    parentId,
    selectors: [
      { type: 'unix', value: `uid:${i}` },
      { type: 'unix', value: 'gid:0' },
    ],
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

test('an empty file is migrated to the latest schema', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'empty.sqlite3');
  writeFileSync(path, '', { mode: 0o600 });
  const ds = await openSqliteDatastore({ path, clock: new ManualClock() });
  t.is(ds.schemaVersion, SQLITE_MIGRATIONS.length);
  t.is(ds.path, path);
  await ds.close();
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[]).filter(
    (n) => !n.startsWith('sqlite_'),
  );
  for (const name of ['attested_nodes', 'bundles', 'entry_events', 'entry_federates_with', 'entry_selectors', 'join_tokens', 'node_selectors', 'registered_entries', 'schema_version', 'server_ca_journals']) {
    t.true(tables.includes(name), name);
  }
  t.deepEqual(db.prepare('SELECT version FROM schema_version ORDER BY version').pluck().all(), SQLITE_MIGRATIONS.map((m) => m.version));
  t.is(db.pragma('journal_mode', { simple: true }), 'wal');
});

test('reopening keeps every kind of record, and event ids keep increasing', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'ds.sqlite3');
  const clock = new ManualClock();
  const ds = await openSqliteDatastore({ path, clock });
  const e = await ds.createEntry(entry(1, 'spiffe://example.org/agent'));
  await ds.createAttestedNode({
    spiffeId: 'spiffe://example.org/agent',
    attestationType: 'join_token',
    certSerial: 'aa',
    certNotAfter: 5,
    newCertSerial: '',
    newCertNotAfter: 0,
    selectors: [{ type: 'join_token', value: 'id:x' }],
    banned: false,
    canReattest: true,
  });
  await ds.createJoinToken({ tokenId: 'x', tokenHash: 'f'.repeat(64), expiresAt: 10 });
  await ds.setBundle('spiffe://example.org', '{"keys":[]}');
  await ds.setCaJournal('spiffe://example.org', 'srv-a', new Uint8Array([1, 2, 3]));
  const lastEvent = await ds.latestEntryEventId();
  await ds.deleteEntry(e.id);
  await ds.createEntry(entry(2, 'spiffe://example.org/agent'));
  await ds.close();

  const again = await openSqliteDatastore({ path, clock });
  t.teardown(() => again.close());
  t.is(await again.countEntries(), 1);
  t.is((await again.getAttestedNode('spiffe://example.org/agent'))?.canReattest, true);
  t.is((await again.listJoinTokens()).length, 1);
  t.is((await again.getBundle('spiffe://example.org'))?.document, '{"keys":[]}');
  t.deepEqual(await again.getCaJournal('spiffe://example.org', 'srv-a'), new Uint8Array([1, 2, 3]));
  t.is((await again.listEntryEvents(0)).length, 3);
  t.true((await again.latestEntryEventId()) > lastEvent);
});

test('migration 2 keeps a journal written before servers had IDs as the legacy owner ""', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'old.sqlite3');
  const old = new Database(path);
  old.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
  for (const statement of (SQLITE_MIGRATIONS[0] as { statements: readonly string[] }).statements) old.exec(statement);
  old.prepare('INSERT INTO schema_version (version, applied_at) VALUES (1, 0)').run();
  old.prepare('INSERT INTO ca_journals (trust_domain_id, journal, updated_at) VALUES (?, ?, ?)').run('spiffe://example.org', Buffer.from([9, 8]), 42);
  old.close();
  const ds = await openSqliteDatastore({ path });
  t.teardown(() => ds.close());
  t.deepEqual(await ds.listCaJournals('spiffe://example.org'), [{ serverId: '', journal: new Uint8Array([9, 8]), updatedAt: 42 }]);
});

test('the directory is created 0700 and the files 0600', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'a', 'b', 'ds.sqlite3');
  const ds = await openSqliteDatastore({ path });
  await ds.createEntry(entry(1, 'spiffe://example.org/agent'));
  t.is(statSync(join(dir, 'a')).mode & 0o777, 0o700);
  t.is(statSync(join(dir, 'a', 'b')).mode & 0o777, 0o700);
  t.is(statSync(path).mode & 0o777, 0o600);
  // WAL mode: while the datastore is open after a write, both side files exist, and are 0600.
  for (const side of [`${path}-wal`, `${path}-shm`]) {
    t.true(existsSync(side), `${side} exists in WAL mode`);
    t.is(statSync(side).mode & 0o777, 0o600, side);
  }
  await ds.close();
});

test('an existing file readable by others is opened with a warning', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'ds.sqlite3');
  writeFileSync(path, '');
  chmodSync(path, 0o644);
  const { logger, lines } = memoryLogger('warn');
  const ds = await openSqliteDatastore({ path, logger });
  await ds.close();
  t.true(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'datastore file is accessible to other users'));
});

test('a database from a newer schema is refused and left untouched', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'ds.sqlite3');
  const ds = await openSqliteDatastore({ path });
  await ds.close();
  const raw = new Database(path);
  raw.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(SQLITE_MIGRATIONS.length + 1, 0);
  raw.close();
  const err = await t.throwsAsync(openSqliteDatastore({ path }), { instanceOf: SigilError });
  t.is(err?.code, 'ERR_FAILED_PRECONDITION');
  t.is(err?.reason, 'schema-too-new');
  const check = new Database(path, { readonly: true });
  t.teardown(() => check.close());
  t.is(check.prepare('SELECT MAX(version) FROM schema_version').pluck().get(), SQLITE_MIGRATIONS.length + 1);
});

test('a file that is not a database is refused', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'ds.sqlite3');
  writeFileSync(path, 'this is not a sqlite database, just some text that is long enough '.repeat(20), { mode: 0o600 });
  const err = await t.throwsAsync(openSqliteDatastore({ path }), { instanceOf: SigilError });
  t.is(err?.code, 'ERR_FAILED_PRECONDITION');
  t.is(err?.reason, 'datastore-open-failed');
});

test('a write lock held by another connection past the busy timeout is ERR_UNAVAILABLE', async (t) => {
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const path = join(dir, 'ds.sqlite3');
  const ds = await openSqliteDatastore({ path, busyTimeoutMs: 20 });
  t.teardown(() => ds.close());
  const other = new Database(path);
  t.teardown(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  const err = await t.throwsAsync(ds.createEntry(entry(1, 'spiffe://example.org/agent')), { instanceOf: SigilError });
  t.is(err?.code, 'ERR_UNAVAILABLE');
  t.is(err?.reason, 'datastore-busy');
  t.is(await ds.countEntries(), 0, 'reads still work in WAL mode while another connection writes');
  other.exec('ROLLBACK');
  await ds.createEntry(entry(1, 'spiffe://example.org/agent'));
  t.is(await ds.countEntries(), 1);
});

test(':memory: opens a throwaway store', async (t) => {
  const ds = await openSqliteDatastore({ path: ':memory:' });
  t.teardown(() => ds.close());
  await ds.createEntry(entry(1, 'spiffe://example.org/agent'));
  t.is(await ds.countEntries(), 1);
});

test('an agent syncs a large entry set by parent ids, page by page, with no miss or repeat', async (t) => {
  // Correctness at scale only: how fast this is belongs to `npm run bench` (benchmark 7).
  const { dir, remove } = tempDir();
  t.teardown(remove);
  const ds = await openSqliteDatastore({ path: join(dir, 'ds.sqlite3') });
  t.teardown(() => ds.close());
  const agents = Array.from({ length: 100 }, (_, i) => `spiffe://example.org/spire/agent/x/${i}`);
  const total = 20_000;
  for (let base = 0; base < total; base += 10_000) {
    await ds.createEntries(Array.from({ length: 10_000 }, (_, i) => entry(base + i, agents[(base + i) % agents.length] as string)));
  }
  const seen = new Set<string>();
  let pages = 0;
  let pageToken = '';
  do {
    const page = await ds.listEntries({ parentIds: agents }, { pageSize: 3_000, pageToken });
    for (const e of page.items) {
      t.false(seen.has(e.id), `entry ${e.id} returned twice`);
      seen.add(e.id);
    }
    pages++;
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  t.is(seen.size, total);
  t.is(pages, Math.ceil(total / 3_000));

  const one = await ds.listEntries({ parentIds: [agents[7] as string] }, { pageSize: 10_000 });
  t.is(one.items.length, total / agents.length);
  t.true(one.items.every((e) => e.parentId === agents[7]));

  const match = await ds.listEntries({ selectors: { selectors: [{ type: 'unix', value: 'uid:4242' }, { type: 'unix', value: 'gid:0' }, { type: 'unix', value: 'user:x' }], match: 'subset' } });
  t.is(match.items.length, 1);
});
