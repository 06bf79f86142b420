import test from 'ava';
import { rejectionOf } from './support/rejection.js';
import { toPem } from '../../src/common/x509.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { startTestServer } from '../helpers/server.js';
import { createCa, createJwtKey } from '../helpers/pki.js';

interface BundleReply {
  trust_domain_id: string;
  document: Buffer;
  x509_authorities: Buffer[];
  sequence: string;
  refresh_hint_seconds: string;
}

interface Jwk {
  kty: string;
  use?: string;
  kid?: string;
  x5c?: string[];
  [member: string]: unknown;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  return (await rejectionOf(p)).code;
}

test('own bundle: x509-svid keys with one x5c and no kid, jwt-svid keys with kid, hint, sequence bumped on every change only', async (t) => {
  const s = await startTestServer({ config: { bundleRefreshHint: '90s' } });
  t.teardown(() => s.destroy());
  const first = await s.admin.call<BundleReply>('Bundles', 'GetBundle');
  const doc = JSON.parse(first.document.toString('utf8')) as { keys: Jwk[]; spiffe_sequence: number; spiffe_refresh_hint: number };
  t.is(doc.spiffe_refresh_hint, 90);
  t.is(first.refresh_hint_seconds, '90');
  t.is(String(doc.spiffe_sequence), first.sequence);
  const x509Keys = doc.keys.filter((k) => k.use === 'x509-svid');
  const jwtKeys = doc.keys.filter((k) => k.use === 'jwt-svid');
  t.true(x509Keys.length >= 1);
  for (const k of x509Keys) {
    t.is(k.x5c?.length, 1);
    t.is(k.kid, undefined);
  }
  t.deepEqual(
    x509Keys.map((k) => Buffer.from(k.x5c?.[0] ?? '', 'base64')),
    s.server.x509Authorities(),
  );
  t.deepEqual(first.x509_authorities, s.server.x509Authorities());
  t.true(jwtKeys.length >= 1);
  for (const k of jwtKeys) t.true(typeof k.kid === 'string' && k.kid.length > 0);
  t.false(doc.keys.some((k) => 'd' in k));
  // the document parses as a SPIFFE bundle
  t.false(Bundle.parseJwks(TrustDomain.parse('example.org'), first.document).isEmpty);

  // no change, no bump
  await s.server.bundles.syncOwn();
  t.is((await s.admin.call<BundleReply>('Bundles', 'GetBundle')).sequence, first.sequence);

  // a prepared X.509 authority and a prepared JWT key are each a change
  await s.admin.call('LocalAuthority', 'Prepare', { kind: 'x509' });
  const second = await s.admin.call<BundleReply>('Bundles', 'GetBundle');
  t.is(Number(second.sequence), Number(first.sequence) + 1);
  t.is(second.x509_authorities.length, first.x509_authorities.length + 1);
  await s.admin.call('LocalAuthority', 'Prepare', { kind: 'jwt' });
  const third = await s.admin.call<BundleReply>('Bundles', 'GetBundle');
  t.is(Number(third.sequence), Number(second.sequence) + 1);
  const thirdDoc = JSON.parse(third.document.toString('utf8')) as { keys: Jwk[] };
  t.is(thirdDoc.keys.filter((k) => k.use === 'jwt-svid').length, jwtKeys.length + 1);

  // a restart with the same authorities keeps the sequence
  await s.stop();
  const again = await startTestServer({ dir: s.dir, config: { bundleRefreshHint: '90s' } });
  t.teardown(() => again.destroy());
  t.is((await again.admin.call<BundleReply>('Bundles', 'GetBundle')).sequence, third.sequence);
});

test('federated bundles: canonical storage, pem replace and append keep JWT keys, bad input refused', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const ca1 = await createCa({ name: 'CN=Fed 1', id: 'spiffe://other.org' });
  const ca2 = await createCa({ name: 'CN=Fed 2', id: 'spiffe://other.org' });
  const jwtKey = createJwtKey('ES256', 'k1');
  const jwk = { ...jwtKey.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'jwt-svid', extra: 'dropped' };
  const doc = {
    keys: [{ ...ca1.key.publicKey.export({ format: 'jwk' }), use: 'x509-svid', x5c: [Buffer.from(ca1.der).toString('base64')] }, jwk],
    spiffe_sequence: 7,
    spiffe_refresh_hint: 60,
  };
  const set = await s.admin.call<BundleReply>('Bundles', 'SetFederatedBundle', { trust_domain: 'other.org', document: Buffer.from(JSON.stringify(doc)), format: 'spiffe' });
  t.is(set.trust_domain_id, 'spiffe://other.org');
  t.is(set.sequence, '7');
  t.deepEqual(set.x509_authorities, [Buffer.from(ca1.der)]);
  const stored = JSON.parse(set.document.toString('utf8')) as { keys: Jwk[] };
  t.false(stored.keys.some((k) => 'extra' in k));

  // append a PEM certificate: JWT key, hint kept, sequence bumped
  const appended = await s.admin.call<BundleReply>('Bundles', 'SetFederatedBundle', {
    trust_domain: 'spiffe://other.org',
    document: Buffer.from(toPem(ca2.der, 'CERTIFICATE')),
    format: 'pem',
    append: true,
  });
  t.is(appended.sequence, '8');
  t.is(appended.refresh_hint_seconds, '60');
  t.deepEqual(appended.x509_authorities, [Buffer.from(ca1.der), Buffer.from(ca2.der)]);
  const b = Bundle.parseJwks(TrustDomain.parse('other.org'), appended.document);
  t.deepEqual([...b.jwtAuthorities.keys()], ['k1']);

  // replace with PEM: only the certificates remain
  const replaced = await s.admin.call<BundleReply>('Bundles', 'SetFederatedBundle', {
    trust_domain: 'other.org',
    document: Buffer.from(toPem(ca2.der, 'CERTIFICATE')),
    format: 'pem',
  });
  t.is(replaced.sequence, '9');
  t.deepEqual(replaced.x509_authorities, [Buffer.from(ca2.der)]);

  const refuse = (document: string, format = 'spiffe', trustDomain = 'other.org'): Promise<string> =>
    codeOf(s.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: trustDomain, document: Buffer.from(document), format }));
  t.is(await refuse('not json'), 'ERR_INVALID_BUNDLE');
  t.is(await refuse('{"keys":{}}'), 'ERR_INVALID_BUNDLE');
  t.is(await refuse(JSON.stringify({ keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['AAAA'] }] })), 'ERR_INVALID_BUNDLE');
  t.is(await refuse(JSON.stringify({ keys: [{ ...jwtKey.publicKey.export({ format: 'jwk' }), use: 'jwt-svid' }] })), 'ERR_INVALID_BUNDLE');
  const priv = jwtKey.privateKey.export({ format: 'jwk' });
  t.is(await refuse(JSON.stringify({ keys: [{ ...priv, kid: 'k2', use: 'jwt-svid' }] })), 'ERR_INVALID_BUNDLE');
  t.is(await refuse(`${toPem(ca1.der, 'CERTIFICATE')}${jwtKey.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()}`, 'pem'), 'ERR_INVALID_BUNDLE');
  t.is(await refuse('no pem here', 'pem'), 'ERR_INVALID_BUNDLE');
  t.is(await refuse('{}', 'xml'), 'ERR_INVALID_ARGUMENT');
  t.is(await refuse(JSON.stringify(doc), 'spiffe', 'example.org'), 'ERR_INVALID_ARGUMENT');

  const all = [...s.logLines, ...s.auditLines].join('\n');
  t.false(all.includes('PRIVATE KEY'));
  t.false(all.includes(String(priv.d)));
});

test('one localauthority prepare is one bundle write, one sequence number and one push (issue 20)', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const writes = (): string[] => s.logLines.filter((l) => l.includes('"trust bundle updated"'));
  await s.server.bundles.settled();
  const before = writes().length;
  const first = await s.admin.call<BundleReply>('Bundles', 'GetBundle');
  for (const kind of ['x509', 'jwt', 'x509']) {
    await s.admin.call('LocalAuthority', 'Prepare', { kind });
    await s.server.bundles.settled();
  }
  const after = writes().slice(before);
  t.is(after.length, 3, `bundle writes: ${after.join('\n')}`);
  t.deepEqual(
    after.map((l) => (JSON.parse(l) as { sequence: number }).sequence),
    [1, 2, 3].map((n) => Number(first.sequence) + n),
  );
});
