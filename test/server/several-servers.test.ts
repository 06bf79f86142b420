/**
 * Two servers in one process, each with its own data dir, KEK and CA, on one PostgreSQL schema
 * (127.0.0.1:5432, database `test`; a fresh schema per test, dropped at the end). Neither start
 * retires the other's authorities; the one bundle is the merge of both servers' authorities
 * with a sequence number that goes up on every change; each server's SVIDs verify (openssl)
 * against it; a JWT key is in it before it signs; `localauthority show` names each owner.
 */
import test from 'ava';
import { toPem } from '../../src/common/x509.js';
import { decodeProtectedHeader } from 'jose';
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { makeServerDir, startTestServer, type TestServer } from '../helpers/server.js';
import { opensslVerify } from '../helpers/openssl.js';
import { POSTGRES_URL, testSchemaPrefix } from '../helpers/postgres.js';

const URL = POSTGRES_URL;
const RUN = testSchemaPrefix('sigil_ha');
const TD = TrustDomain.parse('example.org');



async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stored(s: TestServer<never> | TestServer): Promise<Bundle> {
  const rec = await s.server.datastore.getBundle(TD.idString);
  return Bundle.parseJwks(TD, rec?.document ?? '{}');
}

const der = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('two servers with their own keys share one bundle; neither retires the other', async (t) => {
  const schema = `${RUN}_a`;
  const datastore = { type: 'postgres', connectionString: URL, schema, maxConnections: 4 };
  const started: TestServer[] = [];
  t.teardown(async () => {
    for (const s of started.reverse()) await s.destroy();
  });
  const dirA = await makeServerDir();
  const a = await startTestServer({ dir: dirA, config: { datastore, serverId: 'srv-a', ca: { propagationMargin: '1s' } } });
  started.push(a);
  const seqA = (await stored(a)).sequenceNumber ?? 0;
  const caA = a.server.ca.status().x509.find((s) => s.phase === 'active')?.id;
  const jwtA = a.server.ca.status().jwt.find((s) => s.phase === 'active')?.id;

  const b = await startTestServer({ config: { datastore, ca: { propagationMargin: '1s' } } });
  started.push(b);
  t.regex(b.server.serverId, /^srv-[0-9a-f]{12}$/, 'generated and kept in the data dir');
  const caB = b.server.ca.status().x509.find((s) => s.phase === 'active')?.id;
  t.truthy(caB);
  t.not(caB, caA, 'each server has its own CA');
  // B's first authorities were published and waited the margin before signing
  t.true(b.logLines.some((l) => l.includes('waiting for the propagation margin')));

  for (const s of [a, b]) t.false(s.logLines.some((l) => l.includes('retiring it')), 'no start retires another server\'s authority');
  t.is(a.server.ca.status().x509.find((s) => s.phase === 'active')?.id, caA);
  t.is(a.server.ca.status().jwt.find((s) => s.phase === 'active')?.id, jwtA);

  const bundle = await stored(b);
  t.true((bundle.sequenceNumber ?? 0) > seqA, 'the sequence went up for the other server\'s change');
  const anchors = bundle.x509Authorities.map((c) => der(c.der));
  for (const s of [a, b]) for (const c of s.server.ca.x509Authorities()) t.true(anchors.includes(der(c)));
  t.is(bundle.jwtAuthorities.size, 2);

  // each server's SVIDs verify against the one bundle, and A's TLS roots follow the merge (poll)
  const roots = bundle.x509Authorities.map((c) => toPem(c.der, 'CERTIFICATE'));
  for (const s of [a, b]) {
    const chain = s.server.serverSvid.current?.chain ?? [];
    const r = await opensslVerify({ roots, leaf: toPem(chain[0] as Uint8Array, 'CERTIFICATE'), untrusted: chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')) });
    t.true(r.ok, r.output);
  }
  await until(() => a.server.bundles.x509Anchors().length === anchors.length, 'server A to see server B\'s CA');

  // a JWT-SVID of either server carries a kid in the shared bundle
  for (const s of [a, b]) {
    const j = await s.server.ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['x'] });
    t.true(bundle.jwtAuthorities.has(decodeProtectedHeader(j.token).kid ?? ''));
  }

  // localauthority show on A lists both servers' authorities with their owner
  const shown = await a.admin.call<{ authorities: { kind: string; authority_id: string; server_id: string }[] }>('LocalAuthority', 'GetStatus', {});
  const owners = new Map(shown.authorities.map((x) => [`${x.kind}:${x.authority_id}`, x.server_id]));
  t.is(owners.get(`x509:${caA}`), 'srv-a');
  t.is(owners.get(`x509:${caB}`), b.server.serverId);

  // a rotation on B adds to the bundle without dropping A's authorities
  const before = (await stored(a)).sequenceNumber ?? 0;
  await b.server.ca.prepare('x509');
  const after = await stored(a);
  t.true((after.sequenceNumber ?? 0) > before);
  t.is(after.x509Authorities.length, 3);
  for (const c of a.server.ca.x509Authorities()) t.true(after.x509Authorities.some((x) => der(x.der) === der(c)));

  // restarting A keeps A's and B's authorities
  await a.stop();
  const a2 = await startTestServer({ dir: dirA, config: { datastore, serverId: 'srv-a', ca: { propagationMargin: '1s' } } });
  started.push(a2);
  t.is(a2.server.ca.status().x509.find((s) => s.phase === 'active')?.id, caA);
  t.false(a2.logLines.some((l) => l.includes('retiring it')));
  t.is((await stored(a2)).x509Authorities.length, 3);
});
