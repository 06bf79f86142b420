/** The CA lifecycle over a ManualClock: prepare at 1/2, activate at 5/6, prune after the last SVID; operator actions; JWT-SVIDs; restarts. */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { isSigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import { x509 } from '../../src/common/x509.js';
import { CaManager, type SlotInfo } from '../../src/ca/ca-manager.js';
import { DiskKeyManager } from '../../src/ca/key-manager/disk-key-manager.js';
import { memoryLogger, silentLogger } from '../../src/common/logger.js';
import { ManualClock } from '../../src/common/clock.js';
import type { KeyType } from '../../src/plugin/key-manager.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { datastoreCaJournal } from '../../src/server/ca-journal-store.js';
import { T0, TD, makeCa, makeCsr, opensslVerify, sqliteJournal, tempDir } from './helpers.js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const H = 3_600_000;
const M = 60_000;

function akiOf(der: Buffer): string | undefined {
  return new x509.X509Certificate(der).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
}

function phases(slots: SlotInfo[]): string[] {
  return slots.map((s) => s.phase);
}

function reasonOf(err: unknown): string | undefined {
  return (err as { reason?: string } | undefined)?.reason;
}

test('lifecycle: prepare at 1/2 into the bundle, activate at 5/6, drop the old CA once its last SVID expired', async (t) => {
  const { ca, clock, keyManager } = await makeCa();
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  t.teardown(() => ca.stop());
  let bundleChanges = 0;
  const activations: string[] = [];
  ca.on('bundle-changed', () => bundleChanges++);
  ca.on('activated', (kind: string) => activations.push(kind));
  ca.start();

  const first = ca.status();
  t.deepEqual(phases(first.x509), ['active']);
  t.deepEqual(phases(first.jwt), ['active']);
  const ca1 = first.x509[0]?.id as string;
  const jwt1 = first.jwt[0]?.id as string;
  t.is(first.x509[0]?.notAfter.getTime(), T0 + 24 * H);
  t.is(ca.x509Authorities().length, 1);
  const { publicKey } = await makeCsr();

  // Just before half-life nothing happens.
  clock.advance(11 * H + 59 * M);
  await ca.idle();
  t.is(ca.x509Authorities().length, 1);
  t.is(bundleChanges, 0);

  // At half-life the successors are prepared and published at once.
  clock.advance(2 * M);
  await ca.idle();
  let s = ca.status();
  t.deepEqual(phases(s.x509), ['active', 'prepared']);
  t.deepEqual(phases(s.jwt), ['active', 'prepared']);
  t.is(ca.x509Authorities().length, 2);
  t.is(ca.jwtAuthorities().length, 2);
  t.true(bundleChanges >= 1);
  const ca2 = s.x509[1]?.id as string;
  const jwt2 = s.jwt[1]?.id as string;
  // Still signing with the active one.
  t.is(akiOf((await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') })).chain[0] as Buffer), ca1);

  // Just before 5/6: sign with the old CA and JWT key one last time.
  clock.set(T0 + 20 * H - M);
  await ca.idle();
  t.deepEqual(phases(ca.status().x509), ['active', 'prepared']);
  const lastOld = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  t.is(akiOf(lastOld.chain[0] as Buffer), ca1);
  t.is(lastOld.notAfter.getTime(), T0 + 21 * H - M);
  const lastOldJwt = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] });
  t.is(lastOldJwt.kid, jwt1);

  // At 5/6 the prepared ones become active; the old ones stay published.
  clock.advance(2 * M);
  await ca.idle();
  s = ca.status();
  t.deepEqual(s.x509.map((x) => [x.id, x.phase]), [
    [ca1, 'old'],
    [ca2, 'active'],
  ]);
  t.deepEqual(s.jwt.map((x) => [x.id, x.phase]), [
    [jwt1, 'old'],
    [jwt2, 'active'],
  ]);
  t.deepEqual(activations.sort(), ['jwt', 'x509']);
  const fresh = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  t.is(akiOf(fresh.chain[0] as Buffer), ca2);
  t.is((await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] })).kid, jwt2);
  t.is(ca.x509Authorities().length, 2);
  for (const svid of [lastOld, fresh]) t.regex(await opensslVerify(dir, svid.chain, ca.x509Authorities(), clock.nowMs()), /: OK/);

  // The old JWT key goes once the last token it signed expired (5 minutes after it).
  clock.set(T0 + 20 * H + 5 * M);
  await ca.idle();
  t.deepEqual(ca.jwtAuthorities().map((k) => k.kid), [jwt2]);
  t.is(ca.x509Authorities().length, 2);

  // The old CA goes once its last SVID expired, and its key with it.
  const keysBefore = (await keyManager.listKeys()).length;
  clock.set(T0 + 21 * H);
  await ca.idle();
  t.deepEqual(ca.status().x509.map((x) => x.id), [ca2]);
  t.is(ca.x509Authorities().length, 1);
  t.is(new X509Certificate(ca.x509Authorities()[0] as Buffer).checkIssued(new X509Certificate(fresh.chain[0] as Buffer)), false);
  t.true(new X509Certificate(fresh.chain[0] as Buffer).checkIssued(new X509Certificate(ca.x509Authorities()[0] as Buffer)));
  t.is((await keyManager.listKeys()).length, keysBefore - 1);

  // And the cycle continues: the next successor is prepared at the new CA's half-life.
  const ca2Info = ca.status().x509[0] as SlotInfo;
  clock.set(ca2Info.notBefore.getTime() + (ca2Info.notAfter.getTime() - ca2Info.notBefore.getTime()) / 2 + M);
  await ca.idle();
  t.deepEqual(phases(ca.status().x509), ['active', 'prepared']);
});

test('SVID lifetimes never exceed the remaining life of the CA or JWT key', async (t) => {
  const { ca, clock } = await makeCa();
  const { publicKey } = await makeCsr();
  const caInfo = ca.status().x509[0] as SlotInfo;
  const jwtInfo = ca.status().jwt[0] as SlotInfo;
  // Defaults: 1h for X.509, 5m for JWT.
  clock.set(T0 + H);
  t.is((await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') })).notAfter.getTime(), T0 + 2 * H);
  t.is((await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['x'] })).expiresAt.getTime(), T0 + H + 5 * M);
  clock.set(T0 + 23 * H + 30 * M); // no start(): nothing rotates, so the first CA is still active
  const svid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  t.is(svid.notAfter.getTime(), caInfo.notAfter.getTime());
  t.is(new X509Certificate(svid.chain[0] as Buffer).validTo, new X509Certificate(ca.x509Authorities()[0] as Buffer).validTo);
  const long = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w'), ttlMs: 100 * H });
  t.is(long.notAfter.getTime(), caInfo.notAfter.getTime());
  const jwt = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['x'], ttlMs: 100 * H });
  t.is(jwt.expiresAt.getTime(), jwtInfo.notAfter.getTime());
  // notBefore is backdated 10 s for clock skew.
  const nb = new X509Certificate((await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') })).chain[0] as Buffer).validFrom;
  t.is(new Date(nb).getTime(), T0 + 23 * H + 30 * M - 10_000);
});

test('operator actions: prepare, activate, taint and revoke with their preconditions', async (t) => {
  const { ca, clock, keyManager } = await makeCa();
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  let bundleChanges = 0;
  const tainted: string[] = [];
  ca.on('bundle-changed', () => bundleChanges++);
  ca.on('tainted', (_kind: string, id: string) => tainted.push(id));
  const { publicKey } = await makeCsr();
  const ca1 = ca.status().x509[0]?.id as string;

  let err = await t.throwsAsync(ca.activate('x509'));
  t.true(isSigilError(err, 'ERR_FAILED_PRECONDITION'));
  t.is(reasonOf(err), 'no-prepared-authority');

  const p = await ca.prepare('x509');
  t.is(p.phase, 'prepared');
  t.is(ca.x509Authorities().length, 2);
  t.is(bundleChanges, 1);
  // Preparing again replaces the prepared one.
  const p2 = await ca.prepare('x509');
  t.not(p2.id, p.id);
  t.deepEqual(ca.status().x509.map((x) => x.id), [ca1, p2.id]);
  t.is(ca.x509Authorities().length, 2);

  err = await t.throwsAsync(ca.taint('x509', ca1));
  t.is(reasonOf(err), 'authority-active');
  err = await t.throwsAsync(ca.taint('x509', p2.id));
  t.is(reasonOf(err), 'authority-prepared');
  err = await t.throwsAsync(ca.revoke('x509', ca1));
  t.is(reasonOf(err), 'authority-active');
  err = await t.throwsAsync(ca.taint('x509', 'nope'));
  t.true(isSigilError(err, 'ERR_NOT_FOUND'));

  const oldSvid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  const active = await ca.activate('x509');
  t.is(active.id, p2.id);
  t.deepEqual(ca.status().x509.map((x) => [x.id, x.phase]), [
    [ca1, 'old'],
    [p2.id, 'active'],
  ]);

  err = await t.throwsAsync(ca.revoke('x509', ca1));
  t.is(reasonOf(err), 'authority-not-tainted');
  await ca.taint('x509', ca1);
  t.deepEqual(tainted, [ca1]);
  t.true(ca.status().x509[0]?.tainted);
  err = await t.throwsAsync(ca.taint('x509', ca1));
  t.is(reasonOf(err), 'already-tainted');
  // Tainted but not revoked: still trusted.
  t.regex(await opensslVerify(dir, oldSvid.chain, ca.x509Authorities(), clock.nowMs()), /: OK/);

  const keys = (await keyManager.listKeys()).length;
  await ca.revoke('x509', ca1);
  t.deepEqual(ca.status().x509.map((x) => x.id), [p2.id]);
  t.is(ca.x509Authorities().length, 1);
  t.is((await keyManager.listKeys()).length, keys - 1);
  await t.throwsAsync(opensslVerify(dir, oldSvid.chain, ca.x509Authorities(), clock.nowMs()));

  // The same for JWT keys.
  const jwt1 = ca.status().jwt[0]?.id as string;
  await ca.prepare('jwt');
  await ca.activate('jwt');
  err = await t.throwsAsync(ca.revoke('jwt', jwt1));
  t.is(reasonOf(err), 'authority-not-tainted');
  await ca.taint('jwt', jwt1);
  await ca.revoke('jwt', jwt1);
  t.is(ca.jwtAuthorities().length, 1);
  t.not(ca.jwtAuthorities()[0]?.kid, jwt1);

  err = await t.throwsAsync(ca.prepare('nope' as 'x509'));
  t.is(reasonOf(err), 'bad-authority-kind');
});

for (const keyType of ['ec-p256', 'ec-p384', 'rsa-2048'] as KeyType[]) {
  test(`JWT-SVIDs verify with jose and carry only alg/kid/typ in the header (${keyType})`, async (t) => {
    const { ca, clock } = await makeCa({ jwtKeyType: keyType, x509CaKeyType: keyType });
    const minted = await ca.mintJwtSvid({ spiffeId: TD.id('ns', 'prod'), audience: ['sts.example.com'] });
    const key = ca.jwtAuthorities().find((k) => k.kid === minted.kid);
    t.truthy(key);
    const header = decodeProtectedHeader(minted.token);
    const alg = { 'ec-p256': 'ES256', 'ec-p384': 'ES384', 'rsa-2048': 'RS256', 'rsa-4096': 'RS256' }[keyType];
    t.deepEqual(header, { alg, kid: minted.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(minted.token, key?.publicKey as NonNullable<typeof key>['publicKey'], {
      audience: 'sts.example.com',
      currentDate: clock.now(),
      algorithms: [alg],
    });
    t.is(payload.sub, 'spiffe://example.org/ns/prod');
    t.is(payload.aud, 'sts.example.com');
    t.is(payload.iat, Math.floor(clock.nowMs() / 1000));
    t.is(payload.exp, Math.floor(minted.expiresAt.getTime() / 1000));
    t.is(payload.jti, minted.jti);
    t.deepEqual(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'jti', 'sub']);

    const multi = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a', 'b'] });
    const { payload: p2 } = await jwtVerify(multi.token, key?.publicKey as NonNullable<typeof key>['publicKey'], { audience: 'b', currentDate: clock.now() });
    t.deepEqual(p2.aud, ['a', 'b']);

    const { csr } = await makeCsr();
    const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
    t.true(new X509Certificate(svid.chain[0] as Buffer).verify(new X509Certificate(ca.x509Authorities()[0] as Buffer).publicKey));
  });
}

test('with jwtIssuer every JWT-SVID carries iss, which jose checks as a relying party does', async (t) => {
  const { ca, clock } = await makeCa({ jwtIssuer: 'https://oidc.example.org' });
  const minted = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['sts.amazonaws.com'] });
  const key = ca.jwtAuthorities().find((k) => k.kid === minted.kid)?.publicKey;
  if (key === undefined) return t.fail('no key');
  const { payload } = await jwtVerify(minted.token, key, { issuer: 'https://oidc.example.org', audience: 'sts.amazonaws.com', currentDate: clock.now() });
  t.is(payload.iss, 'https://oidc.example.org');
  t.deepEqual(Object.keys(payload), ['iss', 'sub', 'aud', 'exp', 'iat', 'jti']);
  await t.throwsAsync(jwtVerify(minted.token, key, { issuer: 'https://other.example.org', currentDate: clock.now() }));
});

test('restarting over the same journal and key directory keeps the same CA and JWT keys', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const kek = new Secret(randomBytes(32));
  // the datastore file is closed and reopened between the two CAs, as across a server restart
  const dsPath = join(dir, 'datastore.sqlite3');
  let ds = await openSqliteDatastore({ path: dsPath, logger: silentLogger() });
  t.teardown(() => ds.close());
  // through `ds` as it is when called: the file is reopened between the two CAs
  const journal = datastoreCaJournal(
    { getCaJournal: (td, id) => ds.getCaJournal(td, id), setCaJournal: (td, id, data) => ds.setCaJournal(td, id, data), listCaJournals: (td) => ds.listCaJournals(td) },
    TD,
    'test-server',
  );
  const clock = new ManualClock(T0);
  const open = async (): Promise<CaManager> =>
    CaManager.create({
      trustDomain: TD,
      keyManager: await DiskKeyManager.open({ dir: join(dir, 'keys'), kek }),
      journal,
      clock,
      logger: silentLogger(),
    });
  const first = await open();
  await first.prepare('x509');
  const { publicKey } = await makeCsr();
  const before = await first.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  const jwtBefore = await first.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] });
  const statusBefore = first.status();
  const bundleBefore = first.x509Authorities();
  first.stop();
  await first.idle();
  await ds.close();
  ds = await openSqliteDatastore({ path: dsPath, logger: silentLogger() });

  clock.advance(10 * M);
  const second = await open();
  t.deepEqual(second.status(), statusBefore);
  t.deepEqual(second.x509Authorities(), bundleBefore);
  const after = await second.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  t.is(akiOf(after.chain[0] as Buffer), akiOf(before.chain[0] as Buffer));
  const { dir: vdir, cleanup: vclean } = await tempDir();
  t.teardown(vclean);
  t.regex(await opensslVerify(vdir, after.chain, bundleBefore, clock.nowMs()), /: OK/);
  const jwtAfter = await second.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] });
  t.is(jwtAfter.kid, jwtBefore.kid);
  const key = second.jwtAuthorities()[0]?.publicKey;
  await t.notThrowsAsync(jwtVerify(jwtBefore.token, key as NonNullable<typeof key>, { audience: 'a', currentDate: new Date(clock.nowMs() - 10 * M) }));

  // The journal holds certificates and IDs, never private keys.
  const text = Buffer.from((await journal.load()) as Uint8Array).toString('utf8');
  t.notRegex(text, /PRIVATE/);
  const parsed = JSON.parse(text) as { x509: Array<Record<string, unknown>>; jwt: Array<Record<string, unknown>> };
  for (const r of [...parsed.x509, ...parsed.jwt]) {
    for (const k of Object.keys(r)) {
      t.true(['id', 'keyId', 'keyType', 'phase', 'notBefore', 'notAfter', 'tainted', 'signedUntil', 'publishedAt', 'cert', 'intermediates', 'anchors', 'upstream', 'publicKey'].includes(k), k);
    }
  }
});

test('a restart with lost keys retires the authorities it cannot sign with and mints new ones', async (t) => {
  const journal = await sqliteJournal();
  const clock = new ManualClock(T0);
  const { ca: first } = await makeCa({ journal, clock });
  const oldIds = first.status().x509.map((x) => x.id);
  const { publicKey } = await makeCsr();
  await first.signX509Svid({ publicKey, spiffeId: TD.id('w') }); // so the old CA must stay trusted for an hour
  const { ca: second } = await makeCa({ journal, clock }); // a fresh, empty memory key manager
  const s = second.status();
  t.deepEqual(s.x509.map((x) => [x.id, x.phase]), [
    [oldIds[0], 'old'],
    [s.x509[1]?.id, 'active'],
  ]);
  t.is(second.x509Authorities().length, 2);
  await t.notThrowsAsync(second.signX509Svid({ publicKey, spiffeId: TD.id('w') }));
});

test('a journal of another trust domain is refused', async (t) => {
  const journal = await sqliteJournal();
  await journal.save(Buffer.from(JSON.stringify({ version: 1, trustDomain: 'other.org', x509: [], jwt: [] })));
  const err = await t.throwsAsync(makeCa({ journal }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  t.is(reasonOf(err), 'journal-trust-domain');
  await journal.save(Buffer.from('{"version":7}'));
  t.is(reasonOf(await t.throwsAsync(makeCa({ journal }))), 'bad-ca-journal');
});

test('CA logs carry no key material or tokens', async (t) => {
  const { logger, lines } = memoryLogger('debug');
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const kek = new Secret(randomBytes(32));
  const ca = await CaManager.create({
    trustDomain: TD,
    keyManager: await DiskKeyManager.open({ dir: join(dir, 'keys'), kek, logger }),
    journal: await sqliteJournal(),
    clock: new ManualClock(T0),
    logger,
  });
  const jwt = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] });
  await ca.prepare('x509');
  await ca.activate('x509');
  await ca.prepare('jwt');
  t.true(lines.length > 0);
  const all = lines.join('\n');
  t.false(all.includes('PRIVATE'));
  t.false(all.includes('eyJ'));
  t.false(all.includes(jwt.token));
  t.false(all.includes(kek.reveal().toString('hex')));
  t.false(all.includes(kek.reveal().toString('base64')));
});
