/**
 * The change hub over a real SQLite file: listeners get only the kinds they asked for, a
 * backlog is told a page at a time with the event loop free between pages (a bulk insert
 * must not stall every other call), and with no listener for entries the log is skipped
 * rather than read entry by entry.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { NewRegistrationEntry } from '../../src/datastore/datastore.js';
import { openSqliteDatastore, type SqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { makeSelector } from '../../src/spiffe/selector.js';
import { ChangeHub, type Change } from '../../src/server/change-hub.js';

const AGENT = 'spiffe://example.org/sigil/agent/join_token/a';

function entry(i: number): NewRegistrationEntry {
  return {
    spiffeId: `spiffe://example.org/w/${i}`,
    parentId: AGENT,
    selectors: [makeSelector('unix', `uid:${i}`)],
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

const SERVER = 'spiffe://example.org/sigil/server';

async function setup(t: ExecutionContext): Promise<{ ds: SqliteDatastore; hub: ChangeHub }> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-hub-'));
  const ds = await openSqliteDatastore({ path: join(dir, 'db.sqlite3'), clock: new ManualClock(Date.UTC(2026, 0, 1)) });
  const hub = new ChangeHub({ nodeAliasParent: SERVER });
  t.teardown(async () => {
    hub.stop();
    await ds.close();
    await rm(dir, { recursive: true, force: true });
  });
  // polled by hand only
  await hub.startPolling(ds, silentLogger(), 3_600_000);
  return { ds, hub };
}

test('a backlog is told page by page, with I/O running between pages', async (t) => {
  const { ds, hub } = await setup(t);
  const batches: number[] = [];
  hub.subscribe((c) => {
    if (c.kind === 'entries') batches.push(c.changes.length);
  });
  await ds.createEntries(Array.from({ length: 2500 }, (_, i) => entry(i)));
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  await hub.pollNow();
  clearInterval(timer);
  t.deepEqual(batches, [1000, 1000, 500]);
  t.true(ticks > 0, 'timers ran while the backlog was read');
  // nothing is told twice
  await hub.pollNow();
  t.deepEqual(batches, [1000, 1000, 500]);
});

test('listeners get only the kinds they asked for; with none for entries the log is skipped', async (t) => {
  const { ds, hub } = await setup(t);
  const bundlesOnly: Change[] = [];
  hub.subscribe((c) => bundlesOnly.push(c), ['bundles']);
  const e1 = await ds.createEntry(entry(1));
  await hub.pollNow();
  hub.notify('agents', AGENT);
  hub.notify('bundles');
  t.deepEqual(bundlesOnly, [{ kind: 'bundles' }]);

  // a listener for entries joining later hears only of what changes from then on
  const all: Change[] = [];
  hub.subscribe((c) => all.push(c));
  const e2 = await ds.createEntry(entry(2));
  await hub.pollNow();
  t.deepEqual(
    all.flatMap((c) => (c.kind === 'entries' ? c.changes.map((x) => x.id) : [])),
    [e2.id],
  );
  t.not(e1.id, e2.id);
  const deleted = await ds.deleteEntry(e2.id);
  await hub.pollNow();
  const last = all.at(-1);
  t.deepEqual(last, { kind: 'entries', changes: [{ id: deleted.id, entry: undefined }] });
});

test('a listener of one agent hears of that agent and of every agent at once, never of another; unsubscribing ends it (issue 20)', async (t) => {
  const { hub } = await setup(t);
  const other = 'spiffe://example.org/sigil/agent/join_token/b';
  const mine: Change[] = [];
  const general: Change[] = [];
  const stopMine = hub.subscribeAgent(AGENT, (c) => mine.push(c));
  hub.subscribe((c) => general.push(c), ['agents']);
  hub.notify('agents', other);
  hub.notify('agents', AGENT);
  hub.notify('agents');
  hub.notify('bundles');
  t.deepEqual(mine, [{ kind: 'agents', agentId: AGENT }, { kind: 'agents' }]);
  t.deepEqual(general, [{ kind: 'agents', agentId: other }, { kind: 'agents', agentId: AGENT }, { kind: 'agents' }]);
  stopMine();
  hub.notify('agents', AGENT);
  t.is(mine.length, 2);
  // a listener unsubscribing while it is told does not stop the others being told
  const told: string[] = [];
  const stopFirst = hub.subscribeAgent(other, () => {
    told.push('first');
    stopFirst();
  });
  hub.subscribeAgent(other, () => told.push('second'));
  hub.notify('agents', other);
  hub.notify('agents', other);
  t.deepEqual(told, ['first', 'second', 'second']);
});

test('a routed entry subscription is told changes of entries it holds, under parents it reaches, and of node aliases; all of them while everything is on (issue 20)', async (t) => {
  const { ds, hub } = await setup(t);
  const other = 'spiffe://example.org/sigil/agent/join_token/other';
  const told: string[][] = [];
  const interest = hub.subscribeEntries((c) => {
    if (c.kind === 'entries') told.push(c.changes.map((x) => x.entry?.spiffeId ?? `deleted:${x.id}`));
  });
  const generalTold: number[] = [];
  hub.subscribe((c) => generalTold.push(c.kind === 'entries' ? c.changes.length : -1), ['entries']);
  // everything at first: a stream reading its set must miss nothing
  const held = await ds.createEntry(entry(1));
  const elsewhere = await ds.createEntry({ ...entry(2), parentId: other });
  await hub.pollNow();
  t.deepEqual(told, [[held.spiffeId, elsewhere.spiffeId]]);
  // routed: it holds `held` and reaches AGENT and held's SPIFFE ID
  interest.setInterest([AGENT, held.spiffeId], [held.id]);
  interest.setEverything(false);
  told.length = 0;
  const child = await ds.createEntry({ ...entry(3), parentId: held.spiffeId });
  await ds.createEntry({ ...entry(4), parentId: other });
  const alias = await ds.createEntry({ ...entry(5), spiffeId: 'spiffe://example.org/node/group', parentId: SERVER });
  // `held` moved under another parent: still told, since it holds it
  await ds.updateEntry({ ...held, parentId: other });
  await ds.deleteEntry(elsewhere.id);
  await hub.pollNow();
  t.deepEqual(told, [[child.spiffeId, alias.spiffeId, held.spiffeId]]);
  t.deepEqual(generalTold.at(-1), 5, 'a general listener is still told every change');
  // a deletion of what it holds arrives as such
  told.length = 0;
  await ds.deleteEntry(held.id);
  await ds.deleteEntry(child.id);
  await hub.pollNow();
  t.deepEqual(told, [[`deleted:${held.id}`]]);
  // closed: told nothing more
  interest.close();
  told.length = 0;
  await ds.createEntry(entry(6));
  await hub.pollNow();
  t.deepEqual(told, []);
});
