import test from 'ava';
import { once } from 'node:events';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { eventually } from '../agent/support/agent-harness.js';
import { startStack, type Stack } from '../e2e/support/stack.js';
import { createCa, createLeaf, type TestCert } from '../helpers/pki.js';
import { makeServerDir } from '../helpers/server.js';
import { TestTrustDomain } from '../helpers/workload-source.js';
import { agentHolds, deleteEntries, ownBundle, rotateEntry, setFederatedBundle } from './support/real-agent.js';

// The sources against the real agent: a real server (whose CA hangs below an upstream root
// this test holds, so it can also forge a peer certificate no Sigil CA would sign) and a real
// agent in process, with entries for this process's uid.
const OWN = TrustDomain.parse('example.org');
let partner: TestTrustDomain;
let root: TestCert;
let stack: Stack;

test.before(async () => {
  partner = await TestTrustDomain.create('partner.test');
  root = await createCa({ id: 'spiffe://example.org', name: 'CN=example.org upstream root' });
  const dir = await makeServerDir();
  writeFileSync(join(dir, 'root.pem'), root.pem);
  writeFileSync(join(dir, 'root.key'), root.key.pkcs8Pem, { mode: 0o600 });
  chmodSync(join(dir, 'root.key'), 0o600);
  stack = await startStack({ server: { dir, config: { ca: { upstream: { certFile: join(dir, 'root.pem'), keyFile: join(dir, 'root.key') } } } } });
  await setFederatedBundle(stack, partner);
});
test.after.always(() => stack?.close());

/** Creates entries for this uid and waits until the agent holds their SVIDs (and only those). */
async function entries(...specs: { spiffeId: string; hint?: string; federatesWith?: string[] }[]): Promise<string[]> {
  const ids: string[] = [];
  for (const spec of specs) ids.push(await stack.entry(spec));
  await agentHolds(stack, ids.length);
  return ids;
}

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
  const ids = await entries(
    { spiffeId: 'spiffe://example.org/web', federatesWith: ['partner.test'] },
    { spiffeId: 'spiffe://example.org/admin', hint: 'admin', federatesWith: ['partner.test'] },
  );
  t.teardown(() => deleteEntries(stack, ids));
  const [webEntry, adminEntry] = ids as [string, string];
  const client = new WorkloadApiClient({ address: stack.address });
  const byHint = await X509Source.create({ client, picker: { hint: 'admin' } });
  const byId = await X509Source.create({ client, picker: { spiffeId: 'spiffe://example.org/web' } });
  const none = X509Source.create({ client, picker: { hint: 'nope' }, timeoutMs: 300 });
  t.is(byHint.svid.id.toString(), 'spiffe://example.org/admin');
  t.is(byId.svid.id.toString(), 'spiffe://example.org/web');
  t.truthy(byId.getX509BundleForTrustDomain(partner.td));
  t.is(((await t.throwsAsync(none)) as SigilError).reason, 'first-update-timeout');

  const gen = byId.generation;
  const oldSerial = byId.svid.serial;
  let updates = 0;
  byId.on('update', () => updates++);
  // A new SVID for /web, and neither entry federates any more.
  const ds = stack.server.server.datastore;
  for (const id of [webEntry, adminEntry]) {
    const e = await ds.getEntry(id);
    await ds.updateEntry({ ...e!, federatesWith: [] });
  }
  await rotateEntry(stack, webEntry);
  await eventually(() => (byId.svid.serial !== oldSerial && byId.getX509BundleForTrustDomain(partner.td) === undefined ? true : undefined), 20_000, 'the rotated, unfederated state');
  t.true(updates >= 1);
  t.true(byId.generation > gen);
  const served = (await client.fetchX509Context()).svids.find((s) => s.id.toString() === 'spiffe://example.org/web')?.serial;
  t.truthy(served);
  t.is(byId.svid.serial, served as string); // the source holds what the agent now serves
  t.falsy(byId.getX509BundleForTrustDomain(partner.td)); // federation removed

  await byHint.close();
  t.is((t.throws(() => byHint.svid) as SigilError).reason, 'source-closed');
  t.is(byId.svid.serial, served as string); // the shared client still serves the other
  await byId.close();
  client.close();
});

test.serial('X509Source.create times out on a ManualClock and honours abort', async (t) => {
  // no entry for this uid: the agent has no identity to give
  await agentHolds(stack, 0);
  const clock = new ManualClock();
  const pending = X509Source.create({ address: stack.address, clock, timeoutMs: 5000 });
  clock.advance(5000);
  t.is(((await t.throwsAsync(pending)) as SigilError).code, 'ERR_DEADLINE_EXCEEDED');
  const ctl = new AbortController();
  const aborted = X509Source.create({ address: stack.address }, ctl.signal);
  ctl.abort();
  t.is(((await t.throwsAsync(aborted)) as SigilError).code, 'ERR_CANCELLED');
});

test.serial('JwtSource and BundleSource: fetch, offline validation, merged bundles', async (t) => {
  const ids = await entries({ spiffeId: 'spiffe://example.org/web', federatesWith: ['partner.test'] });
  t.teardown(() => deleteEntries(stack, ids));
  const own = await ownBundle(stack);
  const jwt = await JwtSource.create({ address: stack.address });
  const bundles = await BundleSource.create({ address: stack.address });
  try {
    const svid = await jwt.fetchJwtSvid({ audience: 'spiffe://example.org/db' });
    t.is((await jwt.validateJwtSvid(svid.marshal(), 'spiffe://example.org/db')).id.toString(), 'spiffe://example.org/web');
    t.is((await validateJwtSvid(svid.marshal(), 'spiffe://example.org/db', bundles)).id.toString(), 'spiffe://example.org/web');
    const err = (await t.throwsAsync(validateJwtSvid(svid.marshal(), 'other', bundles))) as SigilError;
    t.is(err.code, 'ERR_INVALID_JWT_SVID');
    t.is(err.reason, 'audience-mismatch');
    const merged = bundles.getBundleForTrustDomain(OWN)!;
    t.is(merged.x509Authorities.length, 1);
    t.deepEqual([...merged.jwtAuthorities.keys()], [...own.jwtAuthorities.keys()]);
    t.is(own.jwtAuthorities.size, 1);
    t.truthy(bundles.getBundleForTrustDomain(partner.td));
  } finally {
    await jwt.close();
    await bundles.close();
  }
});

test.serial('tls: a peer whose chain does not verify by SPIFFE rules is refused before any data', async (t) => {
  const ids = await entries({ spiffeId: 'spiffe://example.org/server' });
  t.teardown(() => deleteEntries(stack, ids));
  const source = await X509Source.create({ address: stack.address });
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
    // A leaf signed by the trusted (upstream) root but breaking the leaf rules (two URI SANs):
    // no Sigil CA signs that, so the test forges it with the root key it holds.
    const bad = await createLeaf({ issuer: root, uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    const sock = tlsConnect({ host: '127.0.0.1', port, cert: bad.pem, key: bad.key.pkcs8Pem, ca: root.pem, checkServerIdentity: () => undefined });
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
