/**
 * The audit trail part of the datastore conformance suite (src/datastore/audit-trail.ts):
 * every audited write stores its record in the same transaction, only when the change is
 * made; records come back in commit order with stable IDs; cursors only move forward;
 * prune removes only shipped records older than the cutoff.
 */
import type { ExecutionContext } from 'ava';
import type { ManualClock } from '../../src/common/clock.js';
import { SigilError, type ErrorCode } from '../../src/common/errors.js';
import type { AttestedNode, AuditRecord, Datastore, NewRegistrationEntry } from '../../src/datastore/datastore.js';

type It = (title: string, fn: (t: ExecutionContext, ds: Datastore, clock: ManualClock) => Promise<void>) => void;

const TD = 'spiffe://example.org';
const AGENT = `${TD}/spire/agent/join_token/abc`;
const WHO = { who: 'admin:uid:0', caller: { uid: 0, gid: 0, pid: 1 } } as const;

function newEntry(uid: number): NewRegistrationEntry {
  return {
    spiffeId: `${TD}/workload`,
    parentId: AGENT,
    selectors: [{ type: 'unix', value: `uid:${uid}` }],
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

function newNode(): Omit<AttestedNode, 'createdAt' | 'updatedAt'> {
  return {
    spiffeId: AGENT,
    attestationType: 'join_token',
    certSerial: '01ab',
    certNotAfter: 0,
    newCertSerial: '',
    newCertNotAfter: 0,
    selectors: [],
    banned: false,
    canReattest: false,
  };
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: ErrorCode, reason?: string): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: SigilError });
  t.is(err?.code, code);
  if (reason !== undefined) t.is(err?.reason, reason);
}

async function actions(ds: Datastore): Promise<string[]> {
  return (await ds.listAuditRecords(0)).map((r) => r.record.action);
}

/** Registers the audit trail tests through the suite's `it`. */
export function auditTrailConformance(it: It): void {
  it('audit: every audited write stores its record with the change, in commit order', async (t, ds, clock) => {
    const rec = (action: string, extra: Partial<AuditRecord> = {}): AuditRecord => ({ ...WHO, action, result: 'ok', ...extra });
    const { entry } = await ds.createEntryIfNotExists(newEntry(1), (e) => rec('entry.create', { entryId: e.id, spiffeId: e.spiffeId }));
    clock.advance(10);
    await ds.updateEntry({ ...entry, hint: 'h' }, (e) => rec('entry.update', { entryId: e.id, detail: { revision: e.revision } }));
    await ds.deleteEntry(entry.id, (e) => rec('entry.delete', { entryId: e.id }));
    await ds.createAttestedNode(newNode(), (n) => rec('agent.attest', { spiffeId: n.spiffeId }));
    await ds.updateAttestedNode({ ...newNode(), banned: true }, (n) => rec('agent.ban', { detail: { banned: n.banned } }));
    await ds.deleteAttestedNode(AGENT, (n) => rec('agent.evict', { spiffeId: n.spiffeId }));
    await ds.createJoinToken({ tokenId: 't1', tokenHash: 'a'.repeat(64), expiresAt: 5 }, (j) => rec('jointoken.create', { detail: { tokenId: j.tokenId } }));
    await ds.setBundle('spiffe://other.org', '{"keys":[]}', (b) => rec('bundle.set', { spiffeId: b.trustDomainId }));
    await ds.deleteBundle('spiffe://other.org', (td) => rec('bundle.delete', { spiffeId: td }));
    await ds.setCaJournal(TD, 'server-1', new Uint8Array([1]), (td) => rec('localauthority.x509.prepare', { spiffeId: td }));
    // and unaudited writes store nothing
    await ds.createEntry(newEntry(2));
    await ds.setCaJournal(TD, 'server-1', new Uint8Array([2]));

    const all = await ds.listAuditRecords(0);
    t.deepEqual(
      all.map((r) => r.record.action),
      ['entry.create', 'entry.update', 'entry.delete', 'agent.attest', 'agent.ban', 'agent.evict', 'jointoken.create', 'bundle.set', 'bundle.delete', 'localauthority.x509.prepare'],
    );
    for (let i = 1; i < all.length; i++) t.true(all[i]!.seq > all[i - 1]!.seq, 'seq increases in commit order');
    t.is(new Set(all.map((r) => r.auditId)).size, all.length);
    for (const r of all) t.regex(r.auditId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    t.deepEqual(all[0]!.record, rec('entry.create', { entryId: entry.id, spiffeId: entry.spiffeId }), 'the record comes back as stored');
    t.is(all[0]!.at, clock.nowMs() - 10, 'at is the commit time');
    t.deepEqual(all[1]!.record.detail, { revision: 1 }, 'the record is made from what the change produced');
    t.deepEqual(all[4]!.record.detail, { banned: true });
    t.deepEqual(await ds.listAuditRecords(all[7]!.seq), all.slice(8));
    t.deepEqual(await ds.listAuditRecords(0, 3), all.slice(0, 3));
  });

  it('audit: a change that is not made stores no record', async (t, ds) => {
    const rec = (action: string): AuditRecord => ({ ...WHO, action, result: 'ok' });
    const first = await ds.createEntryIfNotExists(newEntry(1), () => rec('entry.create'));
    const again = await ds.createEntryIfNotExists(newEntry(1), () => rec('entry.create'));
    t.true(first.created);
    t.false(again.created);
    await rejects(t, ds.updateEntry({ ...first.entry, id: '00000000-0000-4000-8000-000000000000' }, () => rec('entry.update')), 'ERR_NOT_FOUND');
    await rejects(t, ds.deleteEntry('00000000-0000-4000-8000-000000000000', () => rec('entry.delete')), 'ERR_NOT_FOUND');
    await rejects(t, ds.deleteAttestedNode(AGENT, () => rec('agent.evict')), 'ERR_NOT_FOUND');
    await rejects(t, ds.deleteBundle('spiffe://none.org', () => rec('bundle.delete')), 'ERR_NOT_FOUND', 'bundle-not-found');
    await ds.createJoinToken({ tokenId: 't1', tokenHash: 'a'.repeat(64), expiresAt: 5 });
    await rejects(t, ds.createJoinToken({ tokenId: 't1', tokenHash: 'b'.repeat(64), expiresAt: 5 }, () => rec('jointoken.create')), 'ERR_ALREADY_EXISTS');
    // a record maker that throws rolls the change back with it
    await t.throwsAsync(
      ds.createEntryIfNotExists(newEntry(9), () => {
        throw new SigilError('ERR_INVALID_ARGUMENT', 'no record', { reason: 'test' });
      }),
    );
    t.is((await ds.listEntries({ selectors: { selectors: [{ type: 'unix', value: 'uid:9' }], match: 'exact' } })).items.length, 0);
    t.deepEqual(await actions(ds), ['entry.create']);
  });

  it('audit: concurrent audited writes each store exactly one record', async (t, ds) => {
    const made = await Promise.all(
      Array.from({ length: 40 }, (_, i) => ds.createEntryIfNotExists(newEntry(100 + i), (e) => ({ ...WHO, action: 'entry.create', result: 'ok', entryId: e.id }))),
    );
    const records = await ds.listAuditRecords(0);
    t.is(records.length, 40);
    t.deepEqual(records.map((r) => r.record.entryId).sort(), made.map((m) => m.entry.id).sort());
  });

  it('audit: cursors start at 0, move only forward, and are validated', async (t, ds) => {
    t.is(await ds.getAuditCursor('default'), 0);
    await ds.setAuditCursor('default', 5);
    await ds.setAuditCursor('default', 3);
    t.is(await ds.getAuditCursor('default'), 5, 'a lower seq leaves the cursor');
    await ds.setAuditCursor('default', 9);
    t.is(await ds.getAuditCursor('default'), 9);
    t.is(await ds.getAuditCursor('server-b'), 0, 'cursors are independent');
    await rejects(t, ds.setAuditCursor('bad name', 1), 'ERR_INVALID_ARGUMENT', 'invalid-audit-cursor');
    await rejects(t, ds.getAuditCursor(''), 'ERR_INVALID_ARGUMENT', 'invalid-audit-cursor');
    await rejects(t, ds.setAuditCursor('default', -1), 'ERR_INVALID_ARGUMENT', 'invalid-audit-seq');
    await rejects(t, ds.setAuditCursor('default', 1.5), 'ERR_INVALID_ARGUMENT', 'invalid-audit-seq');
    await rejects(t, ds.listAuditRecords(-1), 'ERR_INVALID_ARGUMENT', 'invalid-audit-seq');
  });

  it('audit: prune removes only shipped records older than the cutoff, and seq is never reused', async (t, ds, clock) => {
    const audit = (): AuditRecord => ({ ...WHO, action: 'entry.create', result: 'ok' });
    for (let i = 0; i < 4; i++) {
      await ds.createEntryIfNotExists(newEntry(i), audit);
      clock.advance(1000);
    }
    const all = await ds.listAuditRecords(0);
    // everything is old enough, but only the first two are shipped
    t.is(await ds.pruneAuditRecords(clock.nowMs(), all[1]!.seq), 2);
    t.deepEqual(await ds.listAuditRecords(0), all.slice(2));
    // shipped, but the last is too new
    t.is(await ds.pruneAuditRecords(all[3]!.at, all[3]!.seq), 1);
    t.deepEqual(await ds.listAuditRecords(0), all.slice(3));
    t.is(await ds.pruneAuditRecords(clock.nowMs(), all[3]!.seq), 1);
    t.deepEqual(await ds.listAuditRecords(0), []);
    await ds.createEntryIfNotExists(newEntry(50), audit);
    const next = await ds.listAuditRecords(0);
    t.is(next.length, 1);
    t.true(next[0]!.seq > all[3]!.seq, 'seq is not reused after the newest records are pruned');
    await rejects(t, ds.pruneAuditRecords(Number.NaN, 1), 'ERR_INVALID_ARGUMENT');
  });
}
