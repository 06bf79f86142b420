/**
 * The conformance suite every Datastore implementation must pass (SQLite now, PostgreSQL
 * later): one call registers the ava tests against a fresh store per test. Failures are
 * asserted by code and reason only.
 */
import test, { type ExecutionContext } from 'ava';
import { ManualClock } from '../../src/common/clock.js';
import { SigilError, type ErrorCode } from '../../src/common/errors.js';
import type { AttestedNode, Datastore, EntryFilter, NewRegistrationEntry, RegistrationEntry } from '../../src/datastore/datastore.js';
import type { Selector } from '../../src/spiffe/selector.js';
import { auditTrailConformance } from './audit-conformance.js';

/** What the suite hands an implementation's `open`: the clock the store must use for every timestamp. */
export interface ConformanceOpenOptions {
  readonly clock: ManualClock;
}

/** A freshly opened, empty store and how to dispose of it (must tolerate an already closed store). */
export interface OpenedDatastore {
  readonly ds: Datastore;
  readonly cleanup: () => Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1);
const TD = 'spiffe://example.org';
const AGENT = `${TD}/spire/agent/join_token/abc`;
const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const HASH_C = 'c'.repeat(64);

function sel(text: string): Selector {
  const i = text.indexOf(':');
  return { type: text.slice(0, i), value: text.slice(i + 1) };
}

function newEntry(over: Partial<NewRegistrationEntry> & { sel?: string[] } = {}): NewRegistrationEntry {
  const { sel: selectorTexts, ...rest } = over;
  return {
    spiffeId: `${TD}/workload`,
    parentId: AGENT,
    selectors: (selectorTexts ?? ['unix:uid:1000']).map(sel),
    x509SvidTtlSeconds: 0,
    jwtSvidTtlSeconds: 0,
    dnsNames: [],
    federatesWith: [],
    admin: false,
    downstream: false,
    hint: '',
    entryExpiresAt: 0,
    ...rest,
  };
}

function newNode(over: Partial<Omit<AttestedNode, 'createdAt' | 'updatedAt'>> = {}): Omit<AttestedNode, 'createdAt' | 'updatedAt'> {
  return {
    spiffeId: AGENT,
    attestationType: 'join_token',
    certSerial: '01ab',
    certNotAfter: T0 + 3_600_000,
    newCertSerial: '',
    newCertNotAfter: 0,
    selectors: [sel('join_token:id:abc')],
    banned: false,
    canReattest: false,
    ...over,
  };
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: ErrorCode, reason?: string): Promise<SigilError> {
  const err = await t.throwsAsync(p, { instanceOf: SigilError });
  t.is(err?.code, code);
  if (reason !== undefined) t.is(err?.reason, reason);
  return err as SigilError;
}

async function listAll(ds: Datastore, filter?: EntryFilter, pageSize = 1000): Promise<RegistrationEntry[]> {
  const out: RegistrationEntry[] = [];
  let pageToken = '';
  do {
    const page = await ds.listEntries(filter, { pageSize, pageToken });
    out.push(...page.items);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return out;
}

function ids(entries: readonly RegistrationEntry[]): string[] {
  return entries.map((e) => e.id);
}

/** Registers the conformance tests for one Datastore implementation. */
export function datastoreConformance(name: string, open: (options: ConformanceOpenOptions) => Promise<OpenedDatastore>): void {
  async function setup(t: ExecutionContext): Promise<{ ds: Datastore; clock: ManualClock }> {
    const clock = new ManualClock(T0);
    const { ds, cleanup } = await open({ clock });
    t.teardown(cleanup);
    return { ds, clock };
  }

  const it = (title: string, fn: (t: ExecutionContext, ds: Datastore, clock: ManualClock) => Promise<void>): void => {
    test(`${name}: ${title}`, async (t) => {
      const { ds, clock } = await setup(t);
      await fn(t, ds, clock);
    });
  };

  // ------------------------------------------------------------------ entries

  it('createEntry assigns a UUID, revision 0 and createdAt, and normalises selectors', async (t, ds, clock) => {
    clock.advance(1234);
    const e = await ds.createEntry(
      newEntry({
        sel: ['unix:uid:1000', 'docker:label:a', 'unix:gid:0', 'unix:uid:1000'],
        x509SvidTtlSeconds: 600,
        jwtSvidTtlSeconds: 60,
        dnsNames: ['b.example.org', 'a.example.org', 'b.example.org'],
        federatesWith: ['spiffe://z.org', 'spiffe://a.org'],
        admin: true,
        downstream: true,
        hint: 'db',
        entryExpiresAt: T0 + 10_000,
      }),
    );
    t.regex(e.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    t.is(e.revision, 0);
    t.is(e.createdAt, T0 + 1234);
    t.deepEqual(e.selectors, [sel('docker:label:a'), sel('unix:gid:0'), sel('unix:uid:1000')]);
    t.deepEqual(e.dnsNames, ['b.example.org', 'a.example.org'], 'dns names keep their order (the first is the CN), without repeats');
    t.deepEqual(e.federatesWith, ['spiffe://a.org', 'spiffe://z.org']);
    t.deepEqual(await ds.getEntry(e.id), e);
    t.is(await ds.getEntry('no-such-entry'), undefined);
  });

  it('createEntry keeps a caller-chosen id and refuses it twice or malformed', async (t, ds) => {
    const e = await ds.createEntry(newEntry({ id: 'my-entry.1' }));
    t.is(e.id, 'my-entry.1');
    await rejects(t, ds.createEntry(newEntry({ id: 'my-entry.1', spiffeId: `${TD}/other` })), 'ERR_ALREADY_EXISTS', 'entry-id-exists');
    for (const id of ['', 'a/b', 'a b', 'x'.repeat(256)]) {
      await rejects(t, ds.createEntry(newEntry({ id })), 'ERR_INVALID_ARGUMENT', 'invalid-entry-id');
    }
  });

  it('a second entry with the same spiffe id, parent and selector set is a duplicate', async (t, ds) => {
    await ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'] }));
    await rejects(t, ds.createEntry(newEntry({ sel: ['unix:gid:2', 'unix:uid:1', 'unix:gid:2'] })), 'ERR_ALREADY_EXISTS', 'entry-exists');
    // Any difference in the triple makes a distinct entry; other fields do not.
    await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
    await ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'], parentId: `${TD}/other-agent` }));
    await ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'], spiffeId: `${TD}/other` }));
    await rejects(t, ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'], hint: 'different', admin: true })), 'ERR_ALREADY_EXISTS', 'entry-exists');
    t.is(await ds.countEntries(), 4);
  });

  it('createEntryIfNotExists returns the existing entry without writing', async (t, ds) => {
    const first = await ds.createEntryIfNotExists(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'] }));
    t.true(first.created);
    const events = await ds.latestEntryEventId();
    const second = await ds.createEntryIfNotExists(newEntry({ sel: ['unix:gid:2', 'unix:uid:1'], hint: 'ignored' }));
    t.false(second.created);
    t.deepEqual(second.entry, first.entry);
    t.is(await ds.latestEntryEventId(), events, 'no event for a no-op');
    t.is(await ds.countEntries(), 1);
  });

  const invalidEntries: [string, Partial<NewRegistrationEntry> & { sel?: string[] }, string][] = [
    ['bad spiffe id', { spiffeId: 'spiffe://Example.org/x' }, 'invalid-spiffe-id'],
    ['spiffe id with trailing slash', { spiffeId: `${TD}/x/` }, 'invalid-spiffe-id'],
    ['non-spiffe spiffe id', { spiffeId: 'https://example.org/x' }, 'invalid-spiffe-id'],
    ['bad parent id', { parentId: 'spiffe://example.org/../x' }, 'invalid-parent-id'],
    ['no selectors', { sel: [] }, 'no-selectors'],
    ['bad selector type', { selectors: [{ type: 'Unix', value: 'uid:1' }] }, 'selector-type'],
    ['empty selector value', { selectors: [{ type: 'unix', value: '' }] }, 'selector-value'],
    ['negative x509 ttl', { x509SvidTtlSeconds: -1 }, 'invalid-ttl'],
    ['fractional jwt ttl', { jwtSvidTtlSeconds: 1.5 }, 'invalid-ttl'],
    ['negative expiry', { entryExpiresAt: -5 }, 'invalid-expiry'],
    ['bad dns name', { dnsNames: ['has space.example.org'] }, 'invalid-dns-name'],
    ['federates with a path', { federatesWith: ['spiffe://other.org/path'] }, 'invalid-federates-with'],
    ['federates with garbage', { federatesWith: ['other.org'] }, 'invalid-federates-with'],
    ['hint with a control character', { hint: 'a\nb' }, 'invalid-hint'],
  ];
  it('createEntry rejects invalid input by reason and writes nothing', async (t, ds) => {
    for (const [label, over, reason] of invalidEntries) {
      const err = await rejects(t, ds.createEntry(newEntry(over)), 'ERR_INVALID_ARGUMENT');
      t.is(err.reason, reason, label);
    }
    await rejects(t, ds.createEntries([newEntry(), newEntry({ x509SvidTtlSeconds: -1 })]), 'ERR_INVALID_ARGUMENT', 'invalid-ttl');
    t.is(await ds.countEntries(), 0);
    t.is(await ds.latestEntryEventId(), 0);
  });

  it('updateEntry replaces the fields, bumps the revision and keeps createdAt', async (t, ds, clock) => {
    const e = await ds.createEntry(newEntry({ sel: ['unix:uid:1'], dnsNames: ['a.example.org'], federatesWith: ['spiffe://a.org'] }));
    clock.advance(5000);
    const u = await ds.updateEntry({
      ...e,
      spiffeId: `${TD}/renamed`,
      selectors: [sel('unix:uid:2'), sel('unix:gid:2')],
      dnsNames: [],
      federatesWith: ['spiffe://b.org'],
      hint: 'h',
      downstream: true,
      x509SvidTtlSeconds: 60,
    });
    t.is(u.revision, 1);
    t.is(u.createdAt, e.createdAt);
    t.deepEqual(u.selectors, [sel('unix:gid:2'), sel('unix:uid:2')]);
    t.deepEqual(await ds.getEntry(e.id), u);
    t.is((await ds.updateEntry({ ...u })).revision, 2);
    // Child rows follow the update: the old selectors and federation no longer match.
    t.is(await ds.countEntries({ selectors: { selectors: [sel('unix:uid:1')], match: 'any' } }), 0);
    t.is(await ds.countEntries({ selectors: { selectors: [sel('unix:uid:2')], match: 'any' } }), 1);
    t.is(await ds.countEntries({ federatesWith: 'spiffe://a.org' }), 0);
    t.is(await ds.countEntries({ federatesWith: 'spiffe://b.org' }), 1);
  });

  it('updateEntry fails for a missing entry, an invalid one, or one that would duplicate another', async (t, ds) => {
    const a = await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
    const b = await ds.createEntry(newEntry({ sel: ['unix:uid:2'] }));
    await rejects(t, ds.updateEntry({ ...a, id: 'missing' }), 'ERR_NOT_FOUND', 'entry-not-found');
    await rejects(t, ds.updateEntry({ ...a, selectors: [] }), 'ERR_INVALID_ARGUMENT', 'no-selectors');
    await rejects(t, ds.updateEntry({ ...b, selectors: a.selectors }), 'ERR_ALREADY_EXISTS', 'entry-exists');
    t.deepEqual(await ds.getEntry(b.id), b, 'a failed update changes nothing');
  });

  it('deleteEntry returns the entry once, then ERR_NOT_FOUND', async (t, ds) => {
    const e = await ds.createEntry(newEntry({ sel: ['unix:uid:1'], federatesWith: ['spiffe://a.org'] }));
    t.deepEqual(await ds.deleteEntry(e.id), e);
    t.is(await ds.getEntry(e.id), undefined);
    await rejects(t, ds.deleteEntry(e.id), 'ERR_NOT_FOUND', 'entry-not-found');
    t.is(await ds.countEntries({ selectors: { selectors: [sel('unix:uid:1')], match: 'any' } }), 0);
    t.is(await ds.countEntries({ federatesWith: 'spiffe://a.org' }), 0);
    // The same triple can be registered again after deletion.
    await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
  });

  it('createEntries writes all in order in one transaction, or none', async (t, ds) => {
    t.deepEqual(await ds.createEntries([]), []);
    const made = await ds.createEntries([newEntry({ sel: ['unix:uid:1'] }), newEntry({ sel: ['unix:uid:2'], id: 'fixed' })]);
    t.deepEqual(
      made.map((e) => e.selectors[0]?.value),
      ['uid:1', 'uid:2'],
    );
    t.is(made[1]?.id, 'fixed');
    const events = await ds.latestEntryEventId();
    await rejects(t, ds.createEntries([newEntry({ sel: ['unix:uid:3'] }), newEntry({ sel: ['unix:uid:3'] })]), 'ERR_ALREADY_EXISTS', 'entry-exists');
    await rejects(t, ds.createEntries([newEntry({ sel: ['unix:uid:4'] }), newEntry({ sel: ['unix:uid:1'] })]), 'ERR_ALREADY_EXISTS', 'entry-exists');
    t.is(await ds.countEntries(), 2, 'a failed batch leaves nothing behind');
    t.is(await ds.latestEntryEventId(), events);
  });

  // ------------------------------------------------------------------ events

  it('every create, update and delete appends an event, in order', async (t, ds, clock) => {
    t.is(await ds.latestEntryEventId(), 0);
    const a = await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
    clock.advance(10);
    const b = await ds.createEntry(newEntry({ sel: ['unix:uid:2'] }));
    clock.advance(10);
    await ds.updateEntry({ ...a, hint: 'x' });
    clock.advance(10);
    await ds.deleteEntry(b.id);
    await rejects(t, ds.deleteEntry(b.id), 'ERR_NOT_FOUND');
    const events = await ds.listEntryEvents(0);
    t.deepEqual(
      events.map((e) => [e.entryId, e.kind, e.at]),
      [
        [a.id, 'created', T0],
        [b.id, 'created', T0 + 10],
        [a.id, 'updated', T0 + 20],
        [b.id, 'deleted', T0 + 30],
      ],
    );
    for (let i = 1; i < events.length; i++) t.true((events[i]?.eventId ?? 0) > (events[i - 1]?.eventId ?? 0));
    const latest = events[3]?.eventId ?? -1;
    t.is(await ds.latestEntryEventId(), latest);
    t.deepEqual(await ds.listEntryEvents(events[1]?.eventId ?? 0, 1), [events[2]]);
    t.deepEqual(await ds.listEntryEvents(latest), []);
    await rejects(t, ds.listEntryEvents(-1), 'ERR_INVALID_ARGUMENT', 'invalid-event-id');
  });

  it('pruneEntryEvents deletes old events but never the newest', async (t, ds, clock) => {
    const a = await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
    clock.advance(100);
    await ds.updateEntry({ ...a, hint: 'x' });
    clock.advance(100);
    await ds.updateEntry({ ...a, hint: 'y' });
    const latest = await ds.latestEntryEventId();
    t.is(await ds.pruneEntryEvents(T0 + 50), 1);
    t.deepEqual(
      (await ds.listEntryEvents(0)).map((e) => e.at),
      [T0 + 100, T0 + 200],
    );
    t.is(await ds.pruneEntryEvents(T0 + 1_000_000), 1);
    t.is(await ds.latestEntryEventId(), latest, 'the newest event survives so the id never goes back');
    await ds.deleteEntry(a.id);
    t.true((await ds.latestEntryEventId()) > latest);
  });

  // ------------------------------------------------------------------ listing and filters

  it('listEntries and countEntries filter by spiffe id, parent, parent list, federation, hint, downstream', async (t, ds) => {
    const other = `${TD}/spire/agent/join_token/other`;
    const e1 = await ds.createEntry(newEntry({ sel: ['unix:uid:1'], hint: 'h1', federatesWith: ['spiffe://a.org'] }));
    const e2 = await ds.createEntry(newEntry({ sel: ['unix:uid:2'], parentId: other, downstream: true, federatesWith: ['spiffe://a.org', 'spiffe://b.org'] }));
    const e3 = await ds.createEntry(newEntry({ sel: ['unix:uid:3'], spiffeId: `${TD}/db`, parentId: `${TD}/third`, hint: 'h1' }));
    const cases: [string, EntryFilter | undefined, RegistrationEntry[]][] = [
      ['no filter', undefined, [e1, e2, e3]],
      ['empty filter', {}, [e1, e2, e3]],
      ['spiffe id', { spiffeId: `${TD}/workload` }, [e1, e2]],
      ['parent id', { parentId: other }, [e2]],
      ['parent ids', { parentIds: [AGENT, `${TD}/third`, `${TD}/nobody`] }, [e1, e3]],
      ['empty parent ids', { parentIds: [] }, []],
      ['federates with', { federatesWith: 'spiffe://a.org' }, [e1, e2]],
      ['federates with b', { federatesWith: 'spiffe://b.org' }, [e2]],
      ['hint', { hint: 'h1' }, [e1, e3]],
      ['downstream', { downstream: true }, [e2]],
      ['not downstream', { downstream: false }, [e1, e3]],
      ['combined', { spiffeId: `${TD}/workload`, hint: 'h1' }, [e1]],
      ['combined parent list and federation', { parentIds: [AGENT, other], federatesWith: 'spiffe://b.org' }, [e2]],
      ['no match', { spiffeId: `${TD}/nothing` }, []],
    ];
    for (const [label, filter, expected] of cases) {
      const want = [...expected].sort((x, y) => (x.id < y.id ? -1 : 1));
      t.deepEqual(await listAll(ds, filter), want, label);
      t.is(await ds.countEntries(filter), want.length, label);
    }
    await rejects(t, ds.listEntries({ downstream: 'yes' as unknown as boolean }), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
    await rejects(t, ds.countEntries({ parentIds: [1 as unknown as string] }), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
  });

  it('listEntriesByParentIds returns every child of the given parents, whole, across statement chunks', async (t, ds) => {
    const other = `${TD}/spire/agent/join_token/other`;
    const e1 = await ds.createEntry(newEntry({ sel: ['unix:uid:1'], hint: 'h1', federatesWith: ['spiffe://a.org'], dnsNames: ['a.example.org'] }));
    const e2 = await ds.createEntry(newEntry({ sel: ['unix:uid:2'], parentId: other }));
    const e3 = await ds.createEntry(newEntry({ sel: ['unix:uid:3'], spiffeId: `${TD}/db`, parentId: `${TD}/workload` }));
    const sorted = (es: readonly RegistrationEntry[]): RegistrationEntry[] => [...es].sort((x, y) => (x.id < y.id ? -1 : 1));
    const cases: [string, string[], RegistrationEntry[]][] = [
      ['one parent', [AGENT], [e1]],
      ['several, one unknown', [AGENT, `${TD}/workload`, `${TD}/nobody`], [e1, e3]],
      ['repeats count once', [other, other, AGENT], [e1, e2]],
      ['none', [], []],
      ['unknown only', [`${TD}/nobody`], []],
    ];
    for (const [label, parents, expected] of cases) t.deepEqual(sorted(await ds.listEntriesByParentIds(parents)), sorted(expected), label);
    // more parents than one statement binds, each with one child, plus a parent with many
    const many = Array.from({ length: 2100 }, (_, i) => `${TD}/agent/${i}`);
    const made = await ds.createEntries([
      ...many.map((p, i) => newEntry({ sel: [`unix:uid:${i}`], parentId: p })),
      ...Array.from({ length: 50 }, (_, i) => newEntry({ sel: [`unix:gid:${i}`], parentId: many[2099] })),
    ]);
    const got = await ds.listEntriesByParentIds([...many, AGENT]);
    t.deepEqual(ids(sorted(got)), ids(sorted([...made, e1])));
    await rejects(t, ds.listEntriesByParentIds([1 as unknown as string]), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
    await rejects(t, ds.listEntriesByParentIds('x' as unknown as string[]), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
  });

  it('listEntriesBySpiffeIdPrefix returns whole every entry whose ID starts with the prefix, byte for byte', async (t, ds) => {
    const make = (spiffeId: string, uid: number): Promise<RegistrationEntry> =>
      ds.createEntry(newEntry({ spiffeId, sel: [`unix:uid:${uid}`], hint: `h${uid}`, dnsNames: ['a.example.org'] }));
    const under = await make(`${TD}/sigil/server`, 1);
    const deep = await make(`${TD}/sigil/agent/join_token/x`, 2);
    const bare = await make(`${TD}/sigil`, 3);
    const lookalikes = await Promise.all([
      make(`${TD}/sigilx/a`, 4),
      make(`${TD}/Sigil/a`, 5),
      make(`${TD}/sigil.d/a`, 6),
      make(`${TD}/app/sigil/server`, 7),
      make(`${TD}/sigil0`, 8),
      make('spiffe://example.orgx/sigil/server', 9),
      make('spiffe://example_org.test/sigil/a', 10),
    ]);
    const sorted = (es: readonly RegistrationEntry[]): RegistrationEntry[] => [...es].sort((x, y) => (x.id < y.id ? -1 : 1));
    const cases: [string, string, RegistrationEntry[]][] = [
      ['under a slash', `${TD}/sigil/`, [under, deep]],
      ['without the slash, siblings too', `${TD}/sigil`, [under, deep, bare, lookalikes[0]!, lookalikes[2]!, lookalikes[4]!]],
      ['case matters', `${TD}/Sigil/`, [lookalikes[1]!]],
      ['a trust domain prefix', 'spiffe://example.org', [under, deep, bare, ...lookalikes.slice(0, 6)]],
      // `_` and `.` are literal, never wildcards
      ['underscore is literal', 'spiffe://example_org.', [lookalikes[6]!]],
      ['no match', `${TD}/nothing/`, []],
      ['last printable character', `${TD}/sigil~`, []],
    ];
    for (const [label, prefix, expected] of cases) t.deepEqual(sorted(await ds.listEntriesBySpiffeIdPrefix(prefix)), sorted(expected), label);
    for (const bad of ['', 1, 'spiffe://example.org/é', 'with space', 'x'.repeat(2049)]) {
      await rejects(t, ds.listEntriesBySpiffeIdPrefix(bad as string), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
    }
  });

  it('getEntries returns the named entries whole, by ID, across statement chunks; unknown IDs are absent', async (t, ds) => {
    const e1 = await ds.createEntry(newEntry({ sel: ['unix:uid:1'], hint: 'h1', federatesWith: ['spiffe://a.org'], dnsNames: ['a.example.org'] }));
    const e2 = await ds.createEntry(newEntry({ sel: ['unix:uid:2'] }));
    await ds.createEntry(newEntry({ sel: ['unix:uid:3'] }));
    const got = await ds.getEntries([e2.id, 'no-such-entry', e1.id, e2.id]);
    t.deepEqual([...got.keys()].sort(), [e1.id, e2.id].sort());
    t.deepEqual(got.get(e1.id), e1);
    t.deepEqual(got.get(e2.id), await ds.getEntry(e2.id));
    t.is((await ds.getEntries([])).size, 0);
    const made = await ds.createEntries(Array.from({ length: 2100 }, (_, i) => newEntry({ sel: [`unix:gid:${i}`] })));
    const all = await ds.getEntries(made.map((e) => e.id));
    t.is(all.size, made.length);
    t.deepEqual(all.get(made[2099]?.id ?? ''), made[2099]);
    await rejects(t, ds.getEntries([1 as unknown as string]), 'ERR_INVALID_ARGUMENT', 'invalid-entry-id');
    await rejects(t, ds.getEntries('x' as unknown as string[]), 'ERR_INVALID_ARGUMENT', 'invalid-entry-id');
  });

  it('selector filters match exact, subset, superset and any', async (t, ds) => {
    const a = await ds.createEntry(newEntry({ sel: ['unix:uid:1'] }));
    const ab = await ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2'] }));
    const abc = await ds.createEntry(newEntry({ sel: ['unix:uid:1', 'unix:gid:2', 'docker:image:x'] }));
    const d = await ds.createEntry(newEntry({ sel: ['unix:uid:9'] }));
    const bd = await ds.createEntry(newEntry({ sel: ['unix:gid:2', 'unix:uid:9'] }));
    const q = ['unix:gid:2', 'unix:uid:1'];
    const cases: [string, string[], 'exact' | 'subset' | 'superset' | 'any', RegistrationEntry[]][] = [
      ['exact', q, 'exact', [ab]],
      ['exact, any order, repeats', ['unix:uid:1', 'unix:gid:2', 'unix:uid:1'], 'exact', [ab]],
      ['subset: all of the entry is given', q, 'subset', [a, ab]],
      ['subset with extra given selectors', [...q, 'unix:uid:9', 'k8s:ns:x'], 'subset', [a, ab, d, bd]],
      ['superset: the entry has all given', q, 'superset', [ab, abc]],
      ['superset of one', ['unix:gid:2'], 'superset', [ab, abc, bd]],
      ['any', q, 'any', [a, ab, abc, bd]],
      ['any with unknown', ['k8s:ns:x'], 'any', []],
      ['exact with unknown', ['k8s:ns:x'], 'exact', []],
      ['subset with unknown only', ['k8s:ns:x'], 'subset', []],
      ['superset with one unknown', [...q, 'k8s:ns:x'], 'superset', []],
    ];
    for (const [label, given, match, expected] of cases) {
      const filter: EntryFilter = { selectors: { selectors: given.map(sel), match } };
      t.deepEqual(ids(await listAll(ds, filter)), ids(expected).sort(), label);
      t.is(await ds.countEntries(filter), expected.length, label);
    }
    t.deepEqual(ids(await listAll(ds, { selectors: { selectors: q.map(sel), match: 'subset' }, spiffeId: `${TD}/workload` })), ids([a, ab]).sort());
    await rejects(t, ds.listEntries({ selectors: { selectors: [], match: 'any' } }), 'ERR_INVALID_ARGUMENT', 'no-selectors');
    await rejects(t, ds.listEntries({ selectors: { selectors: [sel('unix:uid:1')], match: 'some' as 'any' } }), 'ERR_INVALID_ARGUMENT', 'invalid-filter');
    await rejects(t, ds.countEntries({ selectors: { selectors: [{ type: 'BAD', value: 'x' }], match: 'any' } }), 'ERR_INVALID_ARGUMENT', 'selector-type');
  });

  it('pagination walks every entry once in id order, with or without filters', async (t, ds) => {
    const batch: NewRegistrationEntry[] = [];
    for (let i = 0; i < 1234; i++) batch.push(newEntry({ sel: [`unix:uid:${i}`], parentId: i % 3 === 0 ? AGENT : `${TD}/agent-b`, hint: i % 2 === 0 ? 'even' : '' }));
    const made = await ds.createEntries(batch);
    const allIds = ids(made).sort();
    for (const pageSize of [7, 100, 617, 1234, 5000]) {
      t.deepEqual(ids(await listAll(ds, undefined, pageSize)), allIds, `page size ${pageSize}`);
    }
    const first = await ds.listEntries(undefined, { pageSize: 1 });
    const second = await ds.listEntries(undefined, { pageSize: 1, pageToken: first.nextPageToken });
    t.deepEqual([...ids(first.items), ...ids(second.items)], allIds.slice(0, 2));
    const evenIds = ids(made.filter((_, i) => i % 2 === 0)).sort();
    t.deepEqual(ids(await listAll(ds, { hint: 'even' }, 50)), evenIds);
    const mixed = ids(made.filter((_, i) => i % 2 === 0 && i % 3 === 0)).sort();
    t.deepEqual(ids(await listAll(ds, { hint: 'even', parentIds: [AGENT] }, 13)), mixed);
  });

  it('the last page has no token, even when the count divides evenly', async (t, ds) => {
    await ds.createEntries(Array.from({ length: 20 }, (_, i) => newEntry({ sel: [`unix:uid:${i}`] })));
    const p1 = await ds.listEntries(undefined, { pageSize: 10 });
    t.is(p1.items.length, 10);
    t.not(p1.nextPageToken, '');
    const p2 = await ds.listEntries(undefined, { pageSize: 10, pageToken: p1.nextPageToken });
    t.is(p2.items.length, 10);
    t.is(p2.nextPageToken, '');
    const empty = await ds.listEntries({ spiffeId: `${TD}/none` });
    t.deepEqual(empty, { items: [], nextPageToken: '' });
  });

  it('page size defaults to 500 and is clamped to 10000; bad sizes and tokens are refused', async (t, ds) => {
    await ds.createEntries(Array.from({ length: 501 }, (_, i) => newEntry({ sel: [`unix:uid:${i}`] })));
    const p = await ds.listEntries();
    t.is(p.items.length, 500);
    t.not(p.nextPageToken, '');
    t.is((await ds.listEntries(undefined, { pageSize: 0 })).items.length, 500);
    const big = await ds.listEntries(undefined, { pageSize: 1_000_000 });
    t.is(big.items.length, 501);
    t.is(big.nextPageToken, '');
    await rejects(t, ds.listEntries(undefined, { pageSize: -1 }), 'ERR_INVALID_ARGUMENT', 'invalid-page-size');
    await rejects(t, ds.listEntries(undefined, { pageSize: 2.5 }), 'ERR_INVALID_ARGUMENT', 'invalid-page-size');
    await rejects(t, ds.listEntries(undefined, { pageToken: 'not a token!' }), 'ERR_INVALID_ARGUMENT', 'invalid-page-token');
    await rejects(t, ds.listAttestedNodes(undefined, { pageToken: '====' }), 'ERR_INVALID_ARGUMENT', 'invalid-page-token');
  });

  it('changes between pages neither repeat nor skip the rows that stay', async (t, ds) => {
    const made = await ds.createEntries(Array.from({ length: 30 }, (_, i) => newEntry({ sel: [`unix:uid:${i}`] })));
    const sorted = ids(made).sort();
    const p1 = await ds.listEntries(undefined, { pageSize: 10 });
    // Delete one already seen and one not yet seen; add one.
    await ds.deleteEntry(sorted[0] as string);
    await ds.deleteEntry(sorted[15] as string);
    const added = await ds.createEntry(newEntry({ sel: ['unix:uid:999'] }));
    const rest: string[] = [];
    let token = p1.nextPageToken;
    while (token !== '') {
      const p = await ds.listEntries(undefined, { pageSize: 10, pageToken: token });
      rest.push(...ids(p.items));
      token = p.nextPageToken;
    }
    const seen = [...ids(p1.items), ...rest];
    t.is(new Set(seen).size, seen.length, 'no repeats');
    for (const id of sorted.slice(1)) if (id !== sorted[15]) t.true(seen.includes(id));
    t.false(rest.includes(sorted[15] as string));
    t.is(rest.includes(added.id), added.id > (sorted[9] as string));
  });

  // ------------------------------------------------------------------ attested nodes

  it('attested node create, get, update, delete', async (t, ds, clock) => {
    const n = await ds.createAttestedNode(newNode({ selectors: [sel('join_token:id:abc'), sel('aws:region:x')] }));
    t.is(n.createdAt, T0);
    t.is(n.updatedAt, T0);
    t.deepEqual(n.selectors, [sel('aws:region:x'), sel('join_token:id:abc')]);
    t.deepEqual(await ds.getAttestedNode(AGENT), n);
    t.is(await ds.getAttestedNode(`${TD}/nobody`), undefined);
    await rejects(t, ds.createAttestedNode(newNode()), 'ERR_ALREADY_EXISTS', 'node-exists');
    clock.advance(1000);
    const u = await ds.updateAttestedNode({ ...n, certSerial: '02', newCertSerial: '03', newCertNotAfter: T0 + 99, selectors: [], banned: true, canReattest: true });
    t.is(u.createdAt, T0);
    t.is(u.updatedAt, T0 + 1000);
    t.deepEqual(u.selectors, []);
    t.deepEqual(await ds.getAttestedNode(AGENT), u);
    await rejects(t, ds.updateAttestedNode(newNode({ spiffeId: `${TD}/nobody` })), 'ERR_NOT_FOUND', 'node-not-found');
    t.deepEqual(await ds.deleteAttestedNode(AGENT), u);
    t.is(await ds.getAttestedNode(AGENT), undefined);
    await rejects(t, ds.deleteAttestedNode(AGENT), 'ERR_NOT_FOUND', 'node-not-found');
  });

  it('attested nodes are validated', async (t, ds) => {
    await rejects(t, ds.createAttestedNode(newNode({ spiffeId: 'spiffe://EX.org/a' })), 'ERR_INVALID_ARGUMENT', 'invalid-spiffe-id');
    await rejects(t, ds.createAttestedNode(newNode({ attestationType: '' })), 'ERR_INVALID_ARGUMENT', 'invalid-attestation-type');
    await rejects(t, ds.createAttestedNode(newNode({ certSerial: 'XYZ' })), 'ERR_INVALID_ARGUMENT', 'invalid-cert-serial');
    await rejects(t, ds.createAttestedNode(newNode({ certNotAfter: -1 })), 'ERR_INVALID_ARGUMENT', 'invalid-expiry');
    await rejects(t, ds.createAttestedNode(newNode({ selectors: [{ type: 'a b', value: 'x' }] })), 'ERR_INVALID_ARGUMENT', 'selector-type');
    t.is(await ds.countAttestedNodes(), 0);
  });

  it('attested nodes list and count by banned, attestation type and expiry, page by page', async (t, ds) => {
    const made: AttestedNode[] = [];
    for (let i = 0; i < 25; i++) {
      made.push(
        await ds.createAttestedNode(
          newNode({
            spiffeId: `${TD}/spire/agent/x/${String(i).padStart(2, '0')}`,
            attestationType: i % 2 === 0 ? 'join_token' : 'x509pop',
            banned: i % 5 === 0,
            certNotAfter: T0 + i * 1000,
            selectors: [sel(`x:n:${i}`)],
          }),
        ),
      );
    }
    const all: AttestedNode[] = [];
    let pageToken = '';
    do {
      const p = await ds.listAttestedNodes(undefined, { pageSize: 4, pageToken });
      t.true(p.items.length <= 4);
      all.push(...p.items);
      pageToken = p.nextPageToken;
    } while (pageToken !== '');
    t.deepEqual(all, made);
    const check = async (filter: Parameters<Datastore['listAttestedNodes']>[0], pick: (i: number) => boolean): Promise<void> => {
      const want = made.filter((_, i) => pick(i)).map((n) => n.spiffeId);
      t.deepEqual((await ds.listAttestedNodes(filter)).items.map((n) => n.spiffeId), want);
      t.is(await ds.countAttestedNodes(filter), want.length);
    };
    await check({}, () => true);
    await check({ banned: true }, (i) => i % 5 === 0);
    await check({ banned: false }, (i) => i % 5 !== 0);
    await check({ attestationType: 'x509pop' }, (i) => i % 2 === 1);
    await check({ expiresBefore: T0 + 3000 }, (i) => i < 3);
    await check({ expiresBefore: T0 + 10_500, banned: false, attestationType: 'join_token' }, (i) => i <= 10 && i % 2 === 0 && i % 5 !== 0);
  });

  // ------------------------------------------------------------------ join tokens

  const KEY_1 = '1'.repeat(64);
  const KEY_2 = '2'.repeat(64);
  const spend = (tokenHash: string, agentKey: string, over: Partial<Omit<AttestedNode, 'createdAt' | 'updatedAt'>> = {}) => ({
    node: newNode(over),
    joinToken: { tokenHash, agentKey },
  });

  it('a join token is spent by the admission that records its agent, bound to the agent key', async (t, ds, clock) => {
    const tok = await ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 600_000 });
    t.deepEqual(tok, { tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 600_000, createdAt: T0, spentBy: '' });
    t.deepEqual(await ds.listJoinTokens(), [tok]);
    t.deepEqual(await ds.getJoinToken(HASH_A), tok);
    t.is(await ds.getJoinToken(HASH_B), undefined);
    clock.advance(10);
    const node = await ds.admitAttestedNode(spend(HASH_A, KEY_1));
    t.is(node.spiffeId, AGENT);
    t.is(node.createdAt, T0 + 10);
    t.deepEqual(await ds.getAttestedNode(AGENT), node);
    t.deepEqual(await ds.getJoinToken(HASH_A), { ...tok, spentBy: KEY_1 });
    // another key cannot use it; an unknown token admits nobody
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, KEY_2, { certSerial: '02' })), 'ERR_NOT_FOUND', 'join-token-unknown');
    await rejects(t, ds.admitAttestedNode(spend(HASH_B, KEY_1, { spiffeId: `${AGENT}-b` })), 'ERR_NOT_FOUND', 'join-token-unknown');
    t.is((await ds.getAttestedNode(AGENT))?.certSerial, '01ab');
    t.is(await ds.getAttestedNode(`${AGENT}-b`), undefined);
    // the same key may finish again (its first answer was lost): the record is replaced
    clock.advance(10);
    const again = await ds.admitAttestedNode(spend(HASH_A, KEY_1, { certSerial: '03' }));
    t.is(again.certSerial, '03');
    t.is(again.createdAt, T0 + 10);
    t.is(again.updatedAt, T0 + 20);
    t.is(await ds.countAttestedNodes(), 1);
  });

  it('an admission for a caller that has gone writes nothing: the token stays unspent', async (t, ds) => {
    await ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 600_000 });
    const gone = new AbortController();
    gone.abort(new SigilError('ERR_CANCELLED', 'the caller cancelled the call', { reason: 'caller-cancelled' }));
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, KEY_1), gone.signal), 'ERR_CANCELLED', 'caller-cancelled');
    const plain = new AbortController();
    plain.abort();
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, KEY_1), plain.signal), 'ERR_CANCELLED');
    t.is((await ds.getJoinToken(HASH_A))?.spentBy, '');
    t.is(await ds.getAttestedNode(AGENT), undefined);
    // a live signal admits, and a different key can still be the first
    const live = new AbortController();
    await ds.admitAttestedNode(spend(HASH_A, KEY_2), live.signal);
    t.is((await ds.getJoinToken(HASH_A))?.spentBy, KEY_2);
  });

  it('a spent join token does not bring back an evicted or banned agent', async (t, ds) => {
    await ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 600_000 });
    await ds.admitAttestedNode(spend(HASH_A, KEY_1));
    await ds.updateAttestedNode(newNode({ banned: true }));
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, KEY_1)), 'ERR_FAILED_PRECONDITION', 'agent-banned');
    t.true((await ds.getAttestedNode(AGENT))?.banned);
    await ds.deleteAttestedNode(AGENT);
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, KEY_1)), 'ERR_NOT_FOUND', 'join-token-unknown');
    t.is(await ds.getAttestedNode(AGENT), undefined);
    // without a token (evidence that can attest again) a known agent is replaced, a new one created
    await ds.admitAttestedNode({ node: newNode({ attestationType: 'x509pop' }) });
    t.is((await ds.admitAttestedNode({ node: newNode({ attestationType: 'x509pop', certSerial: '04' }) })).certSerial, '04');
    await rejects(t, ds.admitAttestedNode(spend('not-a-hash', KEY_1)), 'ERR_INVALID_ARGUMENT', 'invalid-token-hash');
    await rejects(t, ds.admitAttestedNode(spend(HASH_A, 'KEY')), 'ERR_INVALID_ARGUMENT', 'invalid-agent-key');
  });

  it('concurrent admissions with one join token and different keys: exactly one wins', async (t, ds) => {
    await ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 600_000 });
    const keys = Array.from({ length: 8 }, (_, i) => i.toString(16).repeat(64));
    const results = await Promise.allSettled(keys.map((k) => ds.admitAttestedNode(spend(HASH_A, k))));
    t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
    t.true(keys.includes((await ds.getJoinToken(HASH_A))?.spentBy ?? ''));
  });

  it('an expired join token is still returned (the caller checks expiry) and pruned by time, spent or not', async (t, ds, clock) => {
    await ds.createJoinToken({ tokenId: 'old', tokenHash: HASH_A, expiresAt: T0 + 100 });
    await ds.createJoinToken({ tokenId: 'older', tokenHash: HASH_C, expiresAt: T0 + 50 });
    await ds.createJoinToken({ tokenId: 'fresh', tokenHash: HASH_B, expiresAt: T0 + 100_000 });
    await ds.admitAttestedNode(spend(HASH_C, KEY_1));
    clock.advance(1000);
    const old = await ds.getJoinToken(HASH_A);
    t.is(old?.tokenId, 'old');
    t.true((old?.expiresAt ?? Infinity) < clock.nowMs());
    t.is(await ds.pruneJoinTokens(clock.nowMs()), 2);
    t.deepEqual(
      (await ds.listJoinTokens()).map((x) => x.tokenId),
      ['fresh'],
    );
    t.is(await ds.pruneJoinTokens(clock.nowMs()), 0);
  });

  it('join tokens are validated, unique, and their hash never appears in errors', async (t, ds) => {
    await ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_A, expiresAt: T0 + 1 });
    const dupHash = await rejects(t, ds.createJoinToken({ tokenId: 'tok-2', tokenHash: HASH_A, expiresAt: T0 + 1 }), 'ERR_ALREADY_EXISTS', 'token-exists');
    t.false(dupHash.message.includes(HASH_A));
    await rejects(t, ds.createJoinToken({ tokenId: 'tok-1', tokenHash: HASH_B, expiresAt: T0 + 1 }), 'ERR_ALREADY_EXISTS', 'token-exists');
    const badHash = `${'Z'.repeat(63)}x`;
    const err = await rejects(t, ds.createJoinToken({ tokenId: 'tok-3', tokenHash: badHash, expiresAt: T0 }), 'ERR_INVALID_ARGUMENT', 'invalid-token-hash');
    t.false(err.message.includes(badHash));
    await rejects(t, ds.createJoinToken({ tokenId: 'a b', tokenHash: HASH_C, expiresAt: T0 }), 'ERR_INVALID_ARGUMENT', 'invalid-token-id');
    await rejects(t, ds.createJoinToken({ tokenId: 'tok-4', tokenHash: HASH_C, expiresAt: -1 }), 'ERR_INVALID_ARGUMENT', 'invalid-expiry');
    await rejects(t, ds.getJoinToken('secret-token-not-a-hash'), 'ERR_INVALID_ARGUMENT', 'invalid-token-hash');
  });

  // ------------------------------------------------------------------ bundles and CA journal

  it('bundles are created, replaced, listed and deleted by trust domain id', async (t, ds, clock) => {
    const doc1 = JSON.stringify({ keys: [], spiffe_sequence: 1 });
    const doc2 = JSON.stringify({ keys: [], spiffe_sequence: 2 });
    t.is(await ds.getBundle(TD), undefined);
    const b1 = await ds.setBundle(TD, doc1);
    t.deepEqual(b1, { trustDomainId: TD, document: doc1, updatedAt: T0 });
    clock.advance(5);
    const b2 = await ds.setBundle(TD, doc2);
    t.deepEqual(await ds.getBundle(TD), { trustDomainId: TD, document: doc2, updatedAt: T0 + 5 });
    const fed = await ds.setBundle('spiffe://a.org', doc1);
    t.deepEqual(await ds.listBundles(), [fed, b2]);
    await ds.deleteBundle('spiffe://a.org');
    t.deepEqual(await ds.listBundles(), [b2]);
    await rejects(t, ds.deleteBundle('spiffe://a.org'), 'ERR_NOT_FOUND', 'bundle-not-found');
    await rejects(t, ds.setBundle(`${TD}/path`, doc1), 'ERR_INVALID_ARGUMENT', 'invalid-trust-domain-id');
    await rejects(t, ds.setBundle('example.org', doc1), 'ERR_INVALID_ARGUMENT', 'invalid-trust-domain-id');
    await rejects(t, ds.setBundle(TD, 'not json'), 'ERR_INVALID_ARGUMENT', 'invalid-bundle-document');
    await rejects(t, ds.setBundle(TD, '[1]'), 'ERR_INVALID_ARGUMENT', 'invalid-bundle-document');
    await rejects(t, ds.getBundle('spiffe://A.org'), 'ERR_INVALID_ARGUMENT', 'invalid-trust-domain-id');
  });

  // ------------------------------------------------------------------ federation relationships

  it('federation relationships are created, listed, updated and deleted; deleting keeps the bundle', async (t, ds, clock) => {
    const web = { trustDomainId: 'spiffe://b.org', bundleEndpointUrl: 'https://b.org/bundle', profile: 'https_web' as const, endpointSpiffeId: '' };
    const spf = { trustDomainId: 'spiffe://a.org', bundleEndpointUrl: 'https://10.0.0.1:8443/', profile: 'https_spiffe' as const, endpointSpiffeId: 'spiffe://a.org/spire/server' };
    t.deepEqual(await ds.listFederationRelationships(), []);
    const w = await ds.createFederationRelationship(web);
    t.like(w, { ...web, createdAt: T0, updatedAt: T0, lastAttemptAt: 0, lastSuccessAt: 0, lastError: '', lastSequence: 0, consecutiveFailures: 0, nextRefreshAt: 0 });
    clock.advance(10);
    const a = await ds.createFederationRelationship(spf);
    t.deepEqual(await ds.listFederationRelationships(), [a, w], 'sorted by trust domain id');
    await rejects(t, ds.createFederationRelationship(web), 'ERR_ALREADY_EXISTS', 'federation-exists');
    clock.advance(10);
    const u = await ds.updateFederationRelationship({ ...web, bundleEndpointUrl: 'https://b.org/v2' });
    t.is(u.bundleEndpointUrl, 'https://b.org/v2');
    t.is(u.updatedAt, T0 + 20);
    t.is(u.createdAt, T0);
    t.deepEqual(await ds.getFederationRelationship(web.trustDomainId), u);
    await rejects(t, ds.updateFederationRelationship({ ...web, trustDomainId: 'spiffe://c.org' }), 'ERR_NOT_FOUND', 'federation-not-found');
    await ds.setBundle('spiffe://b.org', JSON.stringify({ keys: [] }));
    t.deepEqual(await ds.deleteFederationRelationship('spiffe://b.org'), u);
    t.is(await ds.getFederationRelationship('spiffe://b.org'), undefined);
    t.truthy(await ds.getBundle('spiffe://b.org'), 'the last bundle stays until the operator deletes it');
    await rejects(t, ds.deleteFederationRelationship('spiffe://b.org'), 'ERR_NOT_FOUND', 'federation-not-found');
    // bad input, each by reason
    await rejects(t, ds.createFederationRelationship({ ...web, trustDomainId: 'b.org' }), 'ERR_INVALID_ARGUMENT', 'invalid-trust-domain-id');
    await rejects(t, ds.createFederationRelationship({ ...web, bundleEndpointUrl: 'http://b.org/' }), 'ERR_INVALID_ARGUMENT', 'invalid-bundle-endpoint-url');
    await rejects(t, ds.createFederationRelationship({ ...web, bundleEndpointUrl: 'https://u:p@b.org/' }), 'ERR_INVALID_ARGUMENT', 'invalid-bundle-endpoint-url');
    await rejects(t, ds.createFederationRelationship({ ...web, profile: 'https' as never }), 'ERR_INVALID_ARGUMENT', 'invalid-federation-profile');
    await rejects(t, ds.createFederationRelationship({ ...web, endpointSpiffeId: 'spiffe://b.org/x' }), 'ERR_INVALID_ARGUMENT', 'invalid-endpoint-spiffe-id');
    await rejects(t, ds.createFederationRelationship({ ...spf, trustDomainId: 'spiffe://d.org' }), 'ERR_INVALID_ARGUMENT', 'invalid-endpoint-spiffe-id');
    await rejects(t, ds.createFederationRelationship({ ...spf, trustDomainId: 'spiffe://e.org', endpointSpiffeId: '' }), 'ERR_INVALID_ARGUMENT', 'invalid-endpoint-spiffe-id');
  });

  it('the federation fetch lease: one holder at a time, due only, released by the outcome, which stores the bundle', async (t, ds) => {
    const td = 'spiffe://a.org';
    await ds.createFederationRelationship({ trustDomainId: td, bundleEndpointUrl: 'https://a.org/', profile: 'https_web', endpointSpiffeId: '' });
    t.true(await ds.claimFederationRefresh(td, 'server-1', T0, T0 + 1000), 'a new relationship is due');
    t.false(await ds.claimFederationRefresh(td, 'server-2', T0 + 10, T0 + 1010), 'the lease is held');
    t.false(await ds.claimFederationRefresh(td, 'server-2', T0 + 10, T0 + 1010, true), 'even forced, a live lease is respected');
    t.false(await ds.recordFederationRefresh(td, 'server-2', { at: T0, nextRefreshAt: T0 + 5000, error: 'x' }), 'only the holder records');
    const doc = JSON.stringify({ keys: [], spiffe_sequence: 7 });
    t.true(await ds.recordFederationRefresh(td, 'server-1', { at: T0 + 20, nextRefreshAt: T0 + 5000, accepted: { document: doc, sequence: 7 } }));
    t.is((await ds.getBundle(td))?.document, doc);
    t.like(await ds.getFederationRelationship(td), { lastAttemptAt: T0 + 20, lastSuccessAt: T0 + 20, lastError: '', lastSequence: 7, consecutiveFailures: 0, nextRefreshAt: T0 + 5000 });
    t.false(await ds.claimFederationRefresh(td, 'server-2', T0 + 30, T0 + 1030), 'not due yet');
    t.true(await ds.claimFederationRefresh(td, 'server-2', T0 + 30, T0 + 1030, true), 'forced (federation refresh)');
    t.true(await ds.recordFederationRefresh(td, 'server-2', { at: T0 + 40, nextRefreshAt: T0 + 100, error: 'e'.repeat(2000) }));
    const failed = await ds.getFederationRelationship(td);
    t.like(failed, { lastSuccessAt: T0 + 20, lastSequence: 7, consecutiveFailures: 1, nextRefreshAt: T0 + 100 });
    t.true((failed?.lastError.length ?? 0) > 0 && (failed?.lastError.length ?? 0) <= 512, 'the error is bounded');
    t.is((await ds.getBundle(td))?.document, doc, 'a failure keeps the last good bundle');
    t.true(await ds.claimFederationRefresh(td, 'server-1', T0 + 100, T0 + 200));
    t.true(await ds.claimFederationRefresh(td, 'server-2', T0 + 200, T0 + 300), 'an expired lease is taken over');
    t.false(await ds.recordFederationRefresh('spiffe://gone.org', 'server-2', { at: T0, nextRefreshAt: T0, error: 'x' }));
    await rejects(t, ds.claimFederationRefresh(td, 'bad holder', T0, T0), 'ERR_INVALID_ARGUMENT', 'invalid-lease-holder');
  });

  it('CA journals store opaque bytes per trust domain and server', async (t, ds, clock) => {
    t.is(await ds.getCaJournal(TD, 'srv-a'), undefined);
    const bytes = new Uint8Array([0, 1, 2, 255, 0, 7]);
    await ds.setCaJournal(TD, 'srv-a', bytes);
    t.deepEqual(await ds.getCaJournal(TD, 'srv-a'), bytes);
    const bigger = new Uint8Array(100_000).map((_, i) => i % 251);
    await ds.setCaJournal(TD, 'srv-a', bigger);
    t.deepEqual(await ds.getCaJournal(TD, 'srv-a'), bigger);
    clock.advance(3);
    await ds.setCaJournal(TD, 'srv-b', bytes);
    t.deepEqual(await ds.getCaJournal(TD, 'srv-a'), bigger, 'another server\'s journal is its own row');
    await ds.setCaJournal('spiffe://a.org', 'srv-a', new Uint8Array());
    t.deepEqual(await ds.getCaJournal('spiffe://a.org', 'srv-a'), new Uint8Array());
    t.deepEqual(
      (await ds.listCaJournals(TD)).map((j) => ({ ...j, journal: Buffer.from(j.journal).length })),
      [
        { serverId: 'srv-a', journal: bigger.length, updatedAt: T0 },
        { serverId: 'srv-b', journal: bytes.length, updatedAt: T0 + 3 },
      ],
    );
    await ds.deleteCaJournal(TD, 'srv-b');
    t.deepEqual((await ds.listCaJournals(TD)).map((j) => j.serverId), ['srv-a']);
    await rejects(t, ds.deleteCaJournal(TD, 'srv-b'), 'ERR_NOT_FOUND', 'journal-not-found');
    await rejects(t, ds.setCaJournal(TD, 'srv-a', 'text' as unknown as Uint8Array), 'ERR_INVALID_ARGUMENT', 'invalid-journal');
    await rejects(t, ds.setCaJournal(`${TD}/x`, 'srv-a', bytes), 'ERR_INVALID_ARGUMENT', 'invalid-trust-domain-id');
    await rejects(t, ds.setCaJournal(TD, 'Srv A', bytes), 'ERR_INVALID_ARGUMENT', 'invalid-server-id');
    await rejects(t, ds.getCaJournal(TD, '-x'), 'ERR_INVALID_ARGUMENT', 'invalid-server-id');
  });

  it('updateCaJournal reads and writes one journal in one write, and writes nothing when told so', async (t, ds) => {
    const seen: Array<string | undefined> = [];
    t.true(await ds.updateCaJournal(TD, 'srv-a', (cur) => {
      seen.push(cur === undefined ? undefined : Buffer.from(cur).toString());
      return Buffer.from('one');
    }));
    t.true(await ds.updateCaJournal(TD, 'srv-a', (cur) => {
      seen.push(cur === undefined ? undefined : Buffer.from(cur).toString());
      return Buffer.from(`${Buffer.from(cur ?? new Uint8Array()).toString()}+two`);
    }));
    t.false(await ds.updateCaJournal(TD, 'srv-a', () => undefined));
    t.deepEqual(seen, [undefined, 'one']);
    t.is(Buffer.from((await ds.getCaJournal(TD, 'srv-a')) ?? new Uint8Array()).toString(), 'one+two');
    t.is(await ds.getCaJournal(TD, 'srv-b'), undefined, 'only the named server\'s journal');
    // concurrent updates of one journal lose nothing: each reads what the one before wrote
    await Promise.all(Array.from({ length: 5 }, () => ds.updateCaJournal(TD, 'srv-a', (cur) => Buffer.from(`${Buffer.from(cur ?? new Uint8Array()).toString()}.`))));
    t.is(Buffer.from((await ds.getCaJournal(TD, 'srv-a')) ?? new Uint8Array()).toString(), 'one+two.....');
    // an error thrown by the update is the caller's, and nothing is written
    await rejects(t, ds.updateCaJournal(TD, 'srv-a', () => { throw new SigilError('ERR_NOT_FOUND', 'gone', { reason: 'authority-not-found' }); }), 'ERR_NOT_FOUND', 'authority-not-found');
    await rejects(t, ds.updateCaJournal(TD, 'srv-a', () => 'text' as unknown as Uint8Array), 'ERR_INVALID_ARGUMENT', 'invalid-journal');
    t.is(Buffer.from((await ds.getCaJournal(TD, 'srv-a')) ?? new Uint8Array()).toString(), 'one+two.....');
    await rejects(t, ds.updateCaJournal(TD, 'Srv A', () => undefined), 'ERR_INVALID_ARGUMENT', 'invalid-server-id');
  });

  it('mergeBundle reads the stored bundle and every journal, and writes only a changed document', async (t, ds) => {
    await ds.setCaJournal(TD, 'srv-a', Buffer.from('A'));
    await ds.setCaJournal(TD, 'srv-b', Buffer.from('B'));
    await ds.setCaJournal('spiffe://a.org', 'srv-c', Buffer.from('C'));
    const seen: string[] = [];
    const merge = (current: { document: string } | undefined, journals: readonly { serverId: string; journal: Uint8Array }[]): string => {
      seen.push(`${current?.document ?? '-'}|${journals.map((j) => `${j.serverId}=${Buffer.from(j.journal).toString()}`).join(',')}`);
      return JSON.stringify({ keys: [], owners: journals.map((j) => j.serverId) });
    };
    const first = await ds.mergeBundle(TD, merge);
    t.true(first.changed);
    t.is(first.record?.document, JSON.stringify({ keys: [], owners: ['srv-a', 'srv-b'] }));
    const again = await ds.mergeBundle(TD, merge);
    t.false(again.changed, 'the same document is not written again');
    t.deepEqual(again.record, first.record);
    t.deepEqual(seen, ['-|srv-a=A,srv-b=B', `${JSON.stringify({ keys: [], owners: ['srv-a', 'srv-b'] })}|srv-a=A,srv-b=B`]);
    t.false((await ds.mergeBundle(TD, () => undefined)).changed);
    await rejects(t, ds.mergeBundle(TD, () => 'not json'), 'ERR_INVALID_ARGUMENT', 'invalid-bundle-document');
    t.deepEqual(await ds.getBundle(TD), first.record, 'a refused merge leaves the stored bundle');
    // concurrent merges each see the other's result: none is lost
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        ds.mergeBundle(TD, (cur) => {
          const doc = JSON.parse(cur?.document ?? '{"keys":[]}') as { keys: unknown[]; n?: number[] };
          return JSON.stringify({ keys: [], n: [...(doc.n ?? []), i] });
        }),
      ),
    );
    const final = JSON.parse((await ds.getBundle(TD))?.document ?? '{}') as { n: number[] };
    t.deepEqual([...final.n].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
  });

  // ------------------------------------------------------------------ audit trail

  auditTrailConformance(it);

  // ------------------------------------------------------------------ concurrency and lifecycle

  it('watchChanges subscribes and unsubscribes; writes go on while a listener is registered', async (t, ds) => {
    const stop = await ds.watchChanges(() => undefined);
    t.is(typeof stop, 'function');
    await ds.createEntry(newEntry({ sel: ['unix:uid:7'] }));
    await ds.setCaJournal(TD, 'srv-a', new Uint8Array([1]));
    stop();
    stop();
    t.is(await ds.countEntries(), 1);
  });

  it('concurrent writes all land, each with its event', async (t, ds) => {
    const made = await Promise.all(Array.from({ length: 50 }, (_, i) => ds.createEntry(newEntry({ sel: [`unix:uid:${i}`] }))));
    t.is(new Set(ids(made)).size, 50);
    t.is(await ds.countEntries(), 50);
    t.is((await ds.listEntryEvents(0)).length, 50);
    const same = await Promise.all(Array.from({ length: 10 }, () => ds.createEntryIfNotExists(newEntry({ sel: ['unix:uid:777'] }))));
    t.is(same.filter((r) => r.created).length, 1);
    t.is(new Set(same.map((r) => r.entry.id)).size, 1);
  });

  it('a closed datastore refuses work with ERR_UNAVAILABLE and closes twice quietly', async (t, ds) => {
    await ds.createEntry(newEntry());
    const pending = ds.countEntries();
    await ds.close();
    t.is(await pending, 1, 'work queued before close still completes');
    await rejects(t, ds.getEntry('x'), 'ERR_UNAVAILABLE', 'datastore-closed');
    await rejects(t, ds.createEntry(newEntry()), 'ERR_UNAVAILABLE', 'datastore-closed');
    await ds.close();
  });
}
