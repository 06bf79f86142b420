/**
 * The audit trail from the datastore to the sink (src/server/audit-shipper.ts): committed
 * changes reach the audit lines with `seq` and `auditId` before the call is answered, SVID
 * mints stay on the direct path, a failed sink write is shipped again with the same IDs, a
 * restart ships what was committed but not shipped, and shipped records are pruned after
 * the retention. Real SQLite, real servers on the admin socket.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { AuditRecord } from '../../src/datastore/datastore.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import type { AuditSink } from '../../src/server/audit-log.js';
import { AuditShipper } from '../../src/server/audit-shipper.js';
import { JournalAudit } from '../../src/server/journal-audit.js';
import { startTestServer } from '../helpers/server.js';

interface Line {
  readonly action: string;
  readonly result: string;
  readonly seq?: number;
  readonly auditId?: string;
  readonly entryId?: string;
  readonly time: string;
}

const parse = (lines: readonly string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);

const entryMsg = (uid: number): Record<string, unknown> => ({
  spiffe_id: 'spiffe://example.org/w',
  parent_id: 'spiffe://example.org/node',
  selectors: [{ type: 'unix', value: `uid:${uid}` }],
  x509_svid_ttl_seconds: 0,
  jwt_svid_ttl_seconds: 0,
  dns_names: [],
  federates_with: [],
  hint: '',
  expires_at: 0,
});

test('committed changes are shipped with seq and auditId before the answer; mints stay direct', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const id = await s.createEntry({ spiffeId: 'spiffe://example.org/a', parentId: 'spiffe://example.org/node', selectors: ['unix:uid:1'] });
  // the answer came after the line: no waiting here
  const create = parse(s.auditLines).find((l) => l.action === 'entry.create');
  t.is(create?.entryId, id);
  t.true(Number.isSafeInteger(create?.seq));
  t.regex(create?.auditId ?? '', /^[0-9a-f-]{36}$/);
  await s.createJoinToken();
  await s.admin.call('LocalAuthority', 'Prepare', { kind: 'x509' });
  await s.admin.call('Entries', 'BatchDeleteEntry', { ids: [id] });
  await s.admin.call('Mint', 'MintJwtSvid', { spiffe_id: 'spiffe://example.org/m', audience: ['x'], ttl_seconds: 0 });
  const lines = parse(s.auditLines);
  const shipped = lines.filter((l) => l.seq !== undefined);
  t.deepEqual(
    shipped.map((l) => l.action),
    ['entry.create', 'jointoken.create', 'localauthority.x509.prepare', 'entry.delete'],
    'the authority operation is recorded with its journal change',
  );
  for (let i = 1; i < shipped.length; i++) t.true((shipped[i]?.seq ?? 0) > (shipped[i - 1]?.seq ?? 0));
  const mint = lines.find((l) => l.action === 'jwtsvid.mint');
  t.is(mint?.seq, undefined, 'a mint commits nothing: written directly');
  t.is(mint?.auditId, undefined);
  // a duplicate create commits nothing and records nothing
  const before = s.auditLines.length;
  await s.admin.call('Entries', 'BatchCreateEntry', { entries: [entryMsg(5)] });
  await s.admin.call('Entries', 'BatchCreateEntry', { entries: [entryMsg(5)] });
  t.is(s.auditLines.length - before, 1);
});

test('a restart ships what was committed but never shipped, once', async (t) => {
  const first = await startTestServer();
  t.teardown(() => first.destroy());
  await first.createEntry({ spiffeId: 'spiffe://example.org/a', parentId: 'spiffe://example.org/node', selectors: ['unix:uid:1'] });
  await first.stop();
  // a change committed with its record whose process died before shipping it
  const ds = await openSqliteDatastore({ path: first.config.datastore.sqlitePath, clock: new ManualClock(Date.now()), logger: silentLogger() });
  const { entry } = await ds.createEntryIfNotExists(
    { spiffeId: 'spiffe://example.org/b', parentId: 'spiffe://example.org/node', selectors: [{ type: 'unix', value: 'uid:2' }], x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0 },
    (e): AuditRecord => ({ who: 'admin:uid:0', action: 'entry.create', result: 'ok', entryId: e.id }),
  );
  await ds.close();
  const second = await startTestServer({ dir: first.dir });
  t.teardown(() => second.stop());
  const shipped = parse(second.auditLines).filter((l) => l.seq !== undefined);
  t.deepEqual(shipped.map((l) => l.entryId), [entry.id], 'only the unshipped record, and before the server served');
  t.is(second.logLines.filter((l) => l.includes('audit trail caught up')).length, 1);
});

test('a failed sink write is shipped again with the same seq and auditId; shipped records are pruned after the retention', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-audit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const ds = await openSqliteDatastore({ path: join(dir, 'ds.sqlite3'), clock, logger: silentLogger() });
  t.teardown(() => ds.close());
  const lines: string[] = [];
  let failFlush = true;
  const sink: AuditSink = {
    write: (l) => void lines.push(l),
    flush: async () => {
      if (failFlush) throw new Error('disk full');
    },
    close: () => undefined,
  };
  const shipper = new AuditShipper({ store: ds, sink, cursor: 'default', clock, logger: silentLogger(), intervalMs: 3_600_000, retentionMs: 86_400_000 });
  await shipper.start();
  for (let i = 0; i < 3; i++) {
    await ds.setBundle(`spiffe://t${i}.org`, '{"keys":[]}', (b): AuditRecord => ({ who: 'admin', action: 'bundle.set', result: 'ok', spiffeId: b.trustDomainId }));
  }
  await shipper.flush();
  t.is(lines.length, 3, 'written, but not known durable');
  t.is(await ds.getAuditCursor('default'), 0, 'so the cursor stays');
  failFlush = false;
  await shipper.flush();
  t.is(lines.length, 6);
  t.deepEqual(lines.slice(3), lines.slice(0, 3), 'the same lines again: same seq, same auditId');
  const last = parse(lines)[5]?.seq ?? -1;
  t.is(await ds.getAuditCursor('default'), last);
  t.is(shipper.cursor, last);
  // a second shipper on the same cursor (a restart) ships nothing more
  const again: string[] = [];
  const restarted = new AuditShipper({ store: ds, sink: { write: (l) => void again.push(l), close: () => undefined }, cursor: 'default', clock, logger: silentLogger(), intervalMs: 3_600_000, retentionMs: 86_400_000 });
  await restarted.start();
  await restarted.stop();
  t.deepEqual(again, []);
  // past the retention the shipped records go (prune runs at most every tenth of the retention)
  t.is((await ds.listAuditRecords(0)).length, 3);
  clock.advance(86_400_000 + 1);
  await ds.setBundle('spiffe://late.org', '{"keys":[]}', (): AuditRecord => ({ who: 'admin', action: 'bundle.set', result: 'ok' }));
  await shipper.flush();
  const left = await ds.listAuditRecords(0);
  t.is(left.length, 1, 'the three old shipped records are pruned; the new one stays for its retention');
  t.is(left[0]?.record.spiffeId, undefined);
  await shipper.stop();
});

test('the journal bridge gives an operation\'s record to its first journal save only, and never after the operation', async (t) => {
  const bridge = new JournalAudit();
  const record: AuditRecord = { who: 'admin', action: 'localauthority.x509.prepare', result: 'ok' };
  let later: (() => ReturnType<JournalAudit['take']>) | undefined;
  const { value, attached } = await bridge.run(record, async () => {
    await Promise.resolve();
    const first = bridge.take();
    const second = bridge.take();
    later = () => bridge.take();
    return [first?.('x'), second];
  });
  t.deepEqual(value, [record, undefined]);
  t.true(attached);
  const none = await bridge.run(record, async () => 1);
  t.false(none.attached, 'an operation that saved nothing is reported, to be audited directly');
  // a timer set inside an operation keeps its context; it finds no record any more
  const fromTimer = await new Promise((resolve) => {
    void bridge.run(record, async () => {
      setTimeout(() => resolve(bridge.take()), 0);
    });
  });
  t.is(fromTimer, undefined);
  t.is(later?.(), undefined);
  t.is(bridge.take(), undefined, 'outside any operation');
});
