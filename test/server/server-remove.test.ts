/**
 * `sigil server remove` (issue 14): two servers in one process on one PostgreSQL schema (fresh,
 * dropped at the end); B stops for good and is removed through A's admin socket by the real
 * `sigil` command. What B signed nothing with leaves the bundle at once, its CA stays until the
 * SVIDs it signed can have expired, then leaves, and its journal is deleted; B refuses to start
 * on its data dir; removing the server answering, or an unknown one, is refused. A server removed
 * while it still runs (or whose journal row is deleted under it) halts: it reports not ready,
 * signs nothing, changes nothing, never writes its journal back, and its `failure` resolves (the
 * `sigil server run` process then exits 1: test/process/server-removed.test.ts).
 */
import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { decodeCaJournal } from '../../src/ca/ca-journal.js';
import { isSigilError } from '../../src/common/errors.js';
import { parseCertificate, x509 } from '../../src/common/x509.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { sigil } from '../helpers/cli.js';
import { makeServerDir, startServersOn, startTestServer, type TestServer } from '../helpers/server.js';
import { POSTGRES_URL, testSchemaPrefix } from '../helpers/postgres.js';

const URL = POSTGRES_URL;
const SCHEMA = testSchemaPrefix('sigil_harm');
const TD = TrustDomain.parse('example.org');


const ski = (der: Uint8Array): string => parseCertificate(der).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '';

async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a server gone for good is removed through another: its authorities leave the bundle once their SVIDs can have expired, then its journal goes', async (t) => {
  const datastore = { type: 'postgres', connectionString: URL, schema: SCHEMA, maxConnections: 4 };
  const started: TestServer[] = [];
  t.teardown(async () => {
    for (const s of started.reverse()) await s.destroy();
  });
  const a = await startTestServer({ config: { datastore, serverId: 'srv-a', ca: { propagationMargin: '1s' } } });
  started.push(a);
  const dirB = await makeServerDir();
  t.teardown(() => rm(dirB, { recursive: true, force: true }));
  const b = await startTestServer({ dir: dirB, config: { datastore, serverId: 'srv-b', ca: { propagationMargin: '1s' } } });
  const caB = b.server.ca.status().x509.find((x) => x.phase === 'active')?.id ?? '';
  const jwtB = b.server.ca.status().jwt.find((x) => x.phase === 'active')?.id ?? '';
  const caA = a.server.ca.status().x509.find((x) => x.phase === 'active')?.id ?? '';
  await b.stop();
  const storedBundle = async (): Promise<Bundle> => Bundle.parseJwks(TD, (await a.server.datastore.getBundle(TD.idString))?.document ?? '{}');
  t.true((await storedBundle()).x509Authorities.some((c) => ski(c.der) === caB));
  t.true((await storedBundle()).jwtAuthorities.has(jwtB));

  const socket = a.server.adminSocketPath;
  const self = await sigil(['server', 'remove', '--server-id', 'srv-a', '--socket', socket]);
  t.is(self.code, 1);
  t.regex(self.stderr, /srv-a is the server answering/);
  const unknown = await sigil(['server', 'remove', '--server-id', 'srv-zz', '--socket', socket]);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /no server srv-zz/);
  const usage = await sigil(['server', 'remove', '--socket', socket]);
  t.is(usage.code, 2);

  const removed = await sigil(['server', 'remove', '--server-id', 'srv-b', '--socket', socket, '--output', 'json']);
  t.is(removed.code, 0, removed.stderr);
  const out = JSON.parse(removed.stdout) as { serverId: string; authorities: number; drainedAt: string; alreadyRemoved: boolean };
  t.is(out.serverId, 'srv-b');
  t.false(out.alreadyRemoved);
  t.is(out.authorities, 2);
  const journal = decodeCaJournal((await a.server.datastore.getCaJournal(TD.idString, 'srv-b')) ?? new Uint8Array());
  t.truthy(journal.removedAt);
  // B signed its server SVID with its CA (journaled before signing) and nothing with its JWT key
  const signedUntil = journal.x509.find((r) => r.id === caB)?.signedUntil ?? 0;
  t.true(signedUntil > a.clock.nowMs());
  t.is(Date.parse(out.drainedAt), Math.ceil(signedUntil / 1000) * 1000);
  await until(async () => !(await storedBundle()).jwtAuthorities.has(jwtB), 'B\'s unused JWT key to leave the bundle');
  t.true((await storedBundle()).x509Authorities.some((c) => ski(c.der) === caB), 'B\'s CA stays while its SVIDs can be valid');
  t.true(a.auditLines.some((l) => l.includes('server.remove') && l.includes('srv-b')));
  const again = await sigil(['server', 'remove', '--server-id', 'srv-b', '--socket', socket]);
  t.is(again.code, 0);
  t.regex(again.stdout, /already removed/);

  // B cannot come back on its data dir
  const refused = await startTestServer({ dir: dirB, config: { datastore, serverId: 'srv-b', ca: { propagationMargin: '1s' } } }).then(
    async (s) => {
      await s.destroy();
      return undefined;
    },
    (err: unknown) => err,
  );
  t.true(isSigilError(refused) && refused.reason === 'server-removed', String(refused));

  // once what B signed has expired: its CA leaves, its journal is deleted, A's authorities stay
  a.clock.advance(signedUntil - a.clock.nowMs() + 1000);
  await until(async () => !(await storedBundle()).x509Authorities.some((c) => ski(c.der) === caB), 'B\'s CA to leave the bundle');
  await until(async () => (await a.server.datastore.getCaJournal(TD.idString, 'srv-b')) === undefined, 'B\'s journal to be deleted');
  t.true((await storedBundle()).x509Authorities.some((c) => ski(c.der) === caA));
  t.deepEqual((await a.server.datastore.listCaJournals(TD.idString)).map((j) => j.serverId), ['srv-a']);
  t.true(a.logLines.some((l) => l.includes('its CA journal deleted')));
});

test('a server removed while it runs halts: not ready, no signature, no change, its journal never written back', async (t) => {
  const datastore = { type: 'postgres', connectionString: URL, schema: `${SCHEMA}_live`, maxConnections: 4 };
  const [a, b, c] = (await startServersOn(t, datastore, ['srv-a', 'srv-b', 'srv-c'])) as [TestServer, TestServer, TestServer];
  const workload = SpiffeId.parse('spiffe://example.org/workload');
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  t.truthy(await b.server.ca.mintJwtSvid({ spiffeId: workload, audience: ['x'] }), 'B signs before its removal');
  t.is((await sigil(['server', 'healthcheck', '--socket', b.server.adminSocketPath])).code, 0);

  // B removed through A while it runs
  const removed = await sigil(['server', 'remove', '--server-id', 'srv-b', '--socket', a.server.adminSocketPath]);
  t.is(removed.code, 0, removed.stderr);
  const stored = await a.server.datastore.getCaJournal(TD.idString, 'srv-b');
  t.truthy(stored && decodeCaJournal(stored).removedAt);
  const failure = await b.server.failure;
  t.is(failure.reason, 'server-removed');
  t.is(failure.code, 'ERR_UNAVAILABLE', 'agents calling it go to another server');
  t.regex(failure.message, /^this server was removed from the trust domain at .* \(sigil server remove on another server\): it signs nothing/);
  t.is(b.server.ca.removal, failure);

  // not ready; every signature and every CA change refused with the removal
  const health = await sigil(['server', 'healthcheck', '--socket', b.server.adminSocketPath]);
  t.is(health.code, 1);
  t.regex(health.stdout, /not ready/);
  const refusals = [
    ['a JWT-SVID', () => b.server.ca.mintJwtSvid({ spiffeId: workload, audience: ['x'] })],
    ['an X.509-SVID', () => b.server.ca.signX509Svid({ publicKey, spiffeId: workload })],
    ['prepare', () => b.server.ca.prepare('x509')],
    ['a lifecycle pass', () => b.server.ca.tick()],
  ] as const;
  for (const [what, call] of refusals) {
    const err = await t.throwsAsync(call());
    t.true(isSigilError(err) && err.reason === 'server-removed', `${what}: ${String(err)}`);
  }
  await b.server.ca.reconcile();
  await b.server.ca.idle();
  t.deepEqual(await a.server.datastore.getCaJournal(TD.idString, 'srv-b'), stored, 'B never wrote its journal back');
  t.true(b.logLines.some((l) => l.includes('this server was removed') && l.includes('"level":50')), 'logged as an error');
  t.true(a.server.ca.removal === undefined && c.server.ca.removal === undefined, 'the others go on');
  t.truthy(await a.server.ca.mintJwtSvid({ spiffeId: workload, audience: ['x'] }));

  // C's journal row deleted under it: C halts as well, and does not write the row again
  await a.server.datastore.deleteCaJournal(TD.idString, 'srv-c');
  const gone = await c.server.failure;
  t.is(gone.reason, 'server-removed');
  t.regex(gone.message, /no CA journal in the datastore any more/);
  await t.throwsAsync(c.server.ca.prepare('jwt'));
  await c.server.ca.idle();
  t.is(await a.server.datastore.getCaJournal(TD.idString, 'srv-c'), undefined);
});
