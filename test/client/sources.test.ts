import test from 'ava';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { authorizeAny, authorizeId, authorizeIf, authorizeMemberOf, authorizeOneOf } from '../../src/client/authorizer.js';
import { BundleSource } from '../../src/client/bundle-source.js';
import { JwtSource } from '../../src/client/jwt-source.js';
import { createTlsServer, tlsClientOptions } from '../../src/client/tls.js';
import { validateJwtSvid } from '../../src/client/validate-jwt-svid.js';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { X509Source } from '../../src/client/x509-source.js';
import { ManualClock } from '../../src/common/clock.js';
import type { SigilError } from '../../src/common/errors.js';
import { SpiffeId } from '../../src/spiffe/spiffe-id.js';
import { createLeaf } from '../helpers/pki.js';
import { pidSelectorKey, startTestAgent, TestTrustDomain, type TestAgent } from '../helpers/workload-source.js';

let domain: TestTrustDomain;
let partner: TestTrustDomain;
let agent: TestAgent;
const ME = pidSelectorKey(process.pid);

test.before(async () => {
  domain = await TestTrustDomain.create('example.org');
  partner = await TestTrustDomain.create('partner.test');
  agent = await startTestAgent(domain);
});
test.after.always(() => agent?.close());

test('authorizers', (t) => {
  const id = SpiffeId.parse('spiffe://example.org/web');
  const other = SpiffeId.parse('spiffe://partner.test/web');
  t.true(authorizeAny()(id));
  t.true(authorizeId('spiffe://example.org/web')(id));
  t.false(authorizeId('spiffe://example.org/web')(other));
  t.true(authorizeOneOf('spiffe://example.org/db', id)(id));
  t.false(authorizeOneOf('spiffe://example.org/db')(id));
  t.true(authorizeMemberOf('example.org')(id));
  t.false(authorizeMemberOf('example.org')(other));
  t.true(authorizeIf((p) => p.path.startsWith('/w'))(id));
});

test.serial('X509Source: picker by hint and by ID, update events, close', async (t) => {
  const web = await domain.issue('/web');
  const admin = await domain.issue('/admin');
  agent.identities.set(ME, { identities: [{ domain, cert: web }, { domain, cert: admin, hint: 'admin' }], federatesWith: [partner] });
  const client = new WorkloadApiClient({ address: agent.address });
  const byHint = await X509Source.create({ client, picker: { hint: 'admin' } });
  const byId = await X509Source.create({ client, picker: { spiffeId: 'spiffe://example.org/web' } });
  const none = X509Source.create({ client, picker: { hint: 'nope' }, timeoutMs: 300 });
  t.is(byHint.svid.id.toString(), 'spiffe://example.org/admin');
  t.is(byId.svid.id.toString(), 'spiffe://example.org/web');
  t.truthy(byId.getX509BundleForTrustDomain(partner.td));
  t.is(((await t.throwsAsync(none)) as SigilError).reason, 'first-update-timeout');

  const gen = byId.generation;
  const updated = once(byId, 'update');
  const web2 = await domain.issue('/web');
  agent.identities.set(ME, { identities: [{ domain, cert: web2 }, { domain, cert: admin, hint: 'admin' }] });
  await updated;
  t.true(byId.generation > gen);
  t.is(byId.svid.serial, web2.x509.serialNumber);
  t.falsy(byId.getX509BundleForTrustDomain(partner.td)); // federation removed

  await byHint.close();
  t.is((t.throws(() => byHint.svid) as SigilError).reason, 'source-closed');
  t.is(byId.svid.serial, web2.x509.serialNumber); // the shared client still serves the other
  await byId.close();
  client.close();
});

test.serial('X509Source.create times out on a ManualClock and honours abort', async (t) => {
  agent.identities.delete(ME);
  const clock = new ManualClock();
  const pending = X509Source.create({ address: agent.address, clock, timeoutMs: 5000 });
  clock.advance(5000);
  t.is(((await t.throwsAsync(pending)) as SigilError).code, 'ERR_DEADLINE_EXCEEDED');
  const ctl = new AbortController();
  const aborted = X509Source.create({ address: agent.address }, ctl.signal);
  ctl.abort();
  t.is(((await t.throwsAsync(aborted)) as SigilError).code, 'ERR_CANCELLED');
});

test.serial('JwtSource and BundleSource: fetch, offline validation, merged bundles', async (t) => {
  agent.identities.set(ME, { identities: [{ domain, cert: await domain.issue('/web') }], federatesWith: [partner] });
  const jwt = await JwtSource.create({ address: agent.address });
  const bundles = await BundleSource.create({ address: agent.address });
  try {
    const svid = await jwt.fetchJwtSvid({ audience: 'spiffe://example.org/db' });
    t.is((await jwt.validateJwtSvid(svid.marshal(), 'spiffe://example.org/db')).id.toString(), 'spiffe://example.org/web');
    t.is((await validateJwtSvid(svid.marshal(), 'spiffe://example.org/db', bundles)).id.toString(), 'spiffe://example.org/web');
    const err = (await t.throwsAsync(validateJwtSvid(svid.marshal(), 'other', bundles))) as SigilError;
    t.is(err.code, 'ERR_INVALID_JWT_SVID');
    t.is(err.reason, 'audience-mismatch');
    const merged = bundles.getBundleForTrustDomain(domain.td)!;
    t.is(merged.x509Authorities.length, 1);
    t.deepEqual([...merged.jwtAuthorities.keys()], [domain.jwtKey.kid]);
    t.truthy(bundles.getBundleForTrustDomain(partner.td));
  } finally {
    await jwt.close();
    await bundles.close();
  }
});

test.serial('tls: a peer whose chain does not verify by SPIFFE rules is refused before any data', async (t) => {
  agent.identities.set(ME, { identities: [{ domain, cert: await domain.issue('/server') }] });
  const source = await X509Source.create({ address: agent.address });
  const refused: SigilError[] = [];
  let served = 0;
  const server = createTlsServer({ source, authorizer: authorizeAny() }, (s) => {
    served++;
    s.end('secret');
  });
  server.on('tlsClientError', (e) => refused.push(e as SigilError));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  try {
    // A leaf signed by the trusted root but breaking the leaf rules (two URI SANs).
    const bad = await createLeaf({ issuer: domain.root, uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    const sock = tlsConnect({ host: '127.0.0.1', port, cert: bad.pem, key: bad.key.pkcs8Pem, ca: domain.root.pem, checkServerIdentity: () => undefined });
    sock.on('error', () => undefined);
    let data = '';
    sock.on('data', (d: Buffer) => (data += d.toString()));
    await once(sock, 'close');
    t.is(data, '');
    t.is(served, 0);
    t.is(refused[0]?.reason, 'multiple-uri-sans');

    // A client with a good SVID is served.
    const good = tlsConnect({ host: '127.0.0.1', port, ...tlsClientOptions({ source, authorizer: authorizeId('spiffe://example.org/server') }) });
    let reply = '';
    good.on('data', (d: Buffer) => (reply += d.toString()));
    await once(good, 'close');
    t.is(reply, 'secret');
    t.is(served, 1);
  } finally {
    server.close();
    await source.close();
  }
});
