/**
 * SPIFFE bundles per the Trust Domain and Bundle standard and X509-SVID section 6: parsing
 * rules (accept and reject by reason), round trips JWKS ↔ value ↔ DER/PEM, change detection,
 * and BundleSet.
 */
import test from 'ava';
import { createCa, createJwtKey, type TestCert, type TestJwtKey } from '../helpers/pki.js';
import { Bundle, type BundleJwk } from '../../src/spiffe/bundle.js';
import { BundleSet } from '../../src/spiffe/bundle-set.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { SigilError } from '../../src/spiffe/errors.js';

const TD = TrustDomain.parse('example.org');

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigilError && err.code === 'ERR_INVALID_BUNDLE') return err.reason;
    throw err;
  }
  return undefined;
}

let rootA: TestCert;
let rootB: TestCert;
let ec: TestJwtKey;
let rsa: TestJwtKey;

test.before(async () => {
  rootA = await createCa({ name: 'CN=Root A' });
  rootB = await createCa({ name: 'CN=Root B', keyAlg: 'rsa-2048' });
  ec = createJwtKey('ES256', 'kid-ec');
  rsa = createJwtKey('RS256', 'kid-rsa');
});

function x509Jwk(cert: TestCert, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const jwk = cert.key.publicKey.export({ format: 'jwk' });
  return { ...jwk, use: 'x509-svid', x5c: [Buffer.from(cert.der).toString('base64')], ...extra };
}

function jwtJwk(key: TestJwtKey, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...key.publicKey.export({ format: 'jwk' }), use: 'jwt-svid', kid: key.kid, ...extra };
}

test('parseJwks accepts the standard forms', (t) => {
  const b = Bundle.parseJwks(TD, { spiffe_sequence: 7, spiffe_refresh_hint: 300, keys: [x509Jwk(rootA), jwtJwk(ec), jwtJwk(rsa)] });
  t.is(b.trustDomain.name, 'example.org');
  t.is(b.x509Authorities.length, 1);
  t.deepEqual(b.x509Authorities[0]!.der, rootA.der);
  t.deepEqual([...b.jwtAuthorities.keys()], ['kid-ec', 'kid-rsa']);
  t.true(b.jwtAuthority('kid-ec')!.publicKey.equals(ec.publicKey));
  t.is(b.sequenceNumber, 7);
  t.is(b.refreshHintSeconds, 300);
});

const ACCEPTS: ReadonlyArray<[string, () => unknown, (b: Bundle) => [number, number]]> = [
  ['empty keys (an emptied bundle)', () => ({ keys: [] }), () => [0, 0]],
  ['no sequence or refresh hint (SHOULD only)', () => ({ keys: [x509Jwk(rootA)] }), () => [1, 0]],
  ['unknown top-level members (4.1)', () => ({ keys: [x509Jwk(rootA)], spiffe_other: 'x', issuer: 1 }), () => [1, 0]],
  ['unknown use ignored (4.2.2)', () => ({ keys: [x509Jwk(rootA, { use: 'sig' }), jwtJwk(ec, { use: 'JWT-SVID' })] }), () => [0, 0]],
  ['missing use ignored (4.2.2)', () => ({ keys: [jwtJwk(ec, { use: undefined })] }), () => [0, 0]],
  ['unknown kty ignored (4.2.1)', () => ({ keys: [{ kty: 'oct', k: 'AAAA', use: 'jwt-svid', kid: 'h' }, { kty: 'XYZ', use: 'x509-svid', x5c: ['AAAA'] }] }), () => [0, 0]],
  ['x509-svid entry without x5c ignored (X509-SVID 6.2)', () => ({ keys: [x509Jwk(rootA, { x5c: undefined })] }), () => [0, 0]],
  ['jwt-svid entry without kid ignored, the keyed one kept', () => ({ keys: [jwtJwk(ec, { kid: undefined }), jwtJwk(rsa)] }), () => [0, 1]],
  ['jwt-svid entry with empty kid ignored', () => ({ keys: [jwtJwk(ec, { kid: '' })] }), () => [0, 0]],
  ['x509-svid entry with empty x5c ignored (X509-SVID 6.2)', () => ({ keys: [x509Jwk(rootA, { x5c: [] })] }), () => [0, 0]],
  [
    'x509-svid entry with several x5c: only the first counts (X509-SVID 6.2)',
    () => ({ keys: [x509Jwk(rootA, { x5c: [Buffer.from(rootA.der).toString('base64'), Buffer.from(rootB.der).toString('base64')] })] }),
    () => [1, 0],
  ],
  ['x509-svid entry with a kid is still used', () => ({ keys: [x509Jwk(rootA, { kid: 'x' })] }), () => [1, 0]],
  ['duplicate X.509 authorities collapse', () => ({ keys: [x509Jwk(rootA), x509Jwk(rootA)] }), () => [1, 0]],
];

for (const [name, doc, counts] of ACCEPTS) {
  test(`parseJwks accepts: ${name}`, (t) => {
    const json = JSON.stringify(doc());
    const b = Bundle.parseJwks(TD, json);
    t.deepEqual([b.x509Authorities.length, b.jwtAuthorities.size], counts(b));
    // String, bytes and object forms agree.
    t.true(Bundle.parseJwks(TD, Buffer.from(json)).equals(b));
    t.true(Bundle.parseJwks(TD, JSON.parse(json) as object).equals(b));
  });
}

const REJECTS: ReadonlyArray<[string, () => unknown, string, boolean?]> = [
  ['not JSON', () => '{keys:', 'malformed-json'],
  ['an array', () => '[]', 'not-an-object'],
  ['null', () => 'null', 'not-an-object'],
  ['no keys member (4.1.3)', () => '{"spiffe_sequence":1}', 'missing-keys'],
  ['keys not an array', () => '{"keys":{}}', 'missing-keys'],
  ['a key that is not an object', () => '{"keys":[1]}', 'bad-key'],
  ['jwt-svid without kid, when kids are required (operator input)', () => JSON.stringify({ keys: [jwtJwk(ec, { kid: undefined })] }), 'missing-kid', true],
  ['jwt-svid with a kid that is not a string', () => JSON.stringify({ keys: [jwtJwk(ec, { kid: 7 })] }), 'bad-kid'],
  ['duplicate kid', () => JSON.stringify({ keys: [jwtJwk(ec), jwtJwk(rsa, { kid: 'kid-ec' })] }), 'duplicate-kid'],
  ['jwt-svid with a bad EC point', () => JSON.stringify({ keys: [jwtJwk(ec, { x: 'AAAA' })] }), 'bad-jwt-authority'],
  ['jwt-svid with private material', () => JSON.stringify({ keys: [{ ...ec.privateKey.export({ format: 'jwk' }), use: 'jwt-svid', kid: 'p' }] }), 'private-key-in-bundle'],
  ['x5c not base64', () => JSON.stringify({ keys: [x509Jwk(rootA, { x5c: ['!!!'] })] }), 'bad-x509-authority'],
  ['x5c not a certificate', () => JSON.stringify({ keys: [x509Jwk(rootA, { x5c: ['MAMCAQE='] })] }), 'bad-x509-authority'],
  ['x5c not an array', () => JSON.stringify({ keys: [x509Jwk(rootA, { x5c: 'abc' })] }), 'bad-x509-authority'],
  ['negative sequence', () => '{"keys":[],"spiffe_sequence":-1}', 'bad-sequence'],
  ['fractional sequence', () => '{"keys":[],"spiffe_sequence":1.5}', 'bad-sequence'],
  ['string sequence', () => '{"keys":[],"spiffe_sequence":"3"}', 'bad-sequence'],
  ['sequence beyond 2^53', () => '{"keys":[],"spiffe_sequence":18446744073709551615}', 'bad-sequence'],
  ['negative refresh hint', () => '{"keys":[],"spiffe_refresh_hint":-5}', 'bad-refresh-hint'],
  ['string refresh hint', () => '{"keys":[],"spiffe_refresh_hint":"5m"}', 'bad-refresh-hint'],
];

for (const [name, doc, reason, requireKid] of REJECTS) {
  test(`parseJwks rejects ${reason}: ${name}`, (t) => {
    t.is(reasonOf(() => Bundle.parseJwks(TD, doc() as string, { requireKid: requireKid === true })), reason);
  });
}

function full(seq = 3): Bundle {
  return Bundle.create(TD, {
    x509Authorities: [rootA.der, rootB.der],
    jwtAuthorities: [
      [ec.kid, ec.publicKey],
      [rsa.kid, rsa.publicKey.export({ format: 'jwk' })],
    ],
    sequenceNumber: seq,
    refreshHintSeconds: 60,
  });
}

test('toJwks follows the standard and round-trips', (t) => {
  const b = full();
  const doc = JSON.parse(b.toJwks()) as { keys: BundleJwk[]; spiffe_sequence: number; spiffe_refresh_hint: number };
  t.is(doc.spiffe_sequence, 3);
  t.is(doc.spiffe_refresh_hint, 60);
  const x = doc.keys.filter((k) => k.use === 'x509-svid');
  const j = doc.keys.filter((k) => k.use === 'jwt-svid');
  t.is(x.length, 2);
  t.is(j.length, 2);
  for (const k of x) {
    t.is(k.kid, undefined, 'X.509 authorities carry no kid (X509-SVID 6.1)');
    t.is(k.x5c?.length, 1, 'exactly one certificate in x5c (X509-SVID 6.1)');
    t.true(typeof k.kty === 'string');
  }
  for (const k of j) {
    t.true(typeof k.kid === 'string' && k.kid !== '');
    t.is(k.d, undefined);
  }
  t.is(x[1]!.kty, 'RSA');
  const again = Bundle.parseJwks(TD, b.toJwks());
  t.true(again.equals(b));
  t.deepEqual(again.toJwksObject(), b.toJwksObject());
});

test('X.509 authorities round-trip through concatenated DER and PEM', (t) => {
  const b = full();
  const fromDer = Bundle.fromX509Der(TD, b.x509ToDer());
  const fromPem = Bundle.fromX509Pem(TD, b.x509ToPem());
  for (const x of [fromDer, fromPem]) {
    t.deepEqual(x.x509AuthoritiesDer(), [rootA.der, rootB.der]);
    t.is(x.jwtAuthorities.size, 0);
    t.deepEqual(x.x509ToDer(), b.x509ToDer());
  }
  t.is(b.x509ToPem().match(/BEGIN CERTIFICATE/g)?.length, 2);
  t.is(Bundle.fromX509Der(TD, new Uint8Array(0)).x509Authorities.length, 0);
  t.is(reasonOf(() => Bundle.fromX509Der(TD, new Uint8Array([0x30, 0x05, 1]))), 'malformed-der');
  t.is(reasonOf(() => Bundle.fromX509Der(TD, new Uint8Array([0x04, 0x00]))), 'malformed-der');
  t.is(reasonOf(() => Bundle.fromX509Der(TD, new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]))), 'bad-x509-authority');
  t.is(reasonOf(() => Bundle.fromX509Pem(TD, '-----BEGIN CERTIFICATE-----\n@@\n-----END CERTIFICATE-----')), 'malformed-pem');
});

test('JWT authorities round-trip through the Workload API JWKS bytes', (t) => {
  const b = full();
  const bytes = b.jwtToJwksBytes();
  const doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as { keys: BundleJwk[] };
  t.is(doc.keys.length, 2);
  for (const k of doc.keys) {
    t.is(k.use, 'jwt-svid');
    t.true(typeof k.kid === 'string');
  }
  const back = Bundle.fromJwtJwks(TD, bytes);
  t.is(back.x509Authorities.length, 0);
  t.true(back.sameAuthorities(b.with({ x509Authorities: [], sequenceNumber: undefined })));
});

test('equals and sameAuthorities detect every kind of change', (t) => {
  const b = full();
  t.true(b.equals(full()));
  t.true(b.equals(b.clone()));
  t.false(b.equals(full(4)), 'sequence change');
  t.true(b.sameAuthorities(full(4)), 'same keys, new sequence');
  t.false(b.sameAuthorities(b.with({ x509Authorities: [rootA.der] })), 'X.509 authority removed');
  t.false(b.sameAuthorities(b.with({ x509Authorities: [rootB.der, rootA.der] })), 'X.509 authorities reordered');
  t.false(b.sameAuthorities(b.with({ jwtAuthorities: [[ec.kid, ec.publicKey]] })), 'JWT authority removed');
  t.false(b.sameAuthorities(b.with({ jwtAuthorities: [[ec.kid, rsa.publicKey], [rsa.kid, rsa.publicKey]] })), 'JWT key replaced under the same kid');
  t.false(b.equals(b.with({ refreshHintSeconds: 30 })), 'refresh hint change');
  t.false(b.sameAuthorities(Bundle.create(TrustDomain.parse('other.org'), { x509Authorities: [rootA.der, rootB.der], jwtAuthorities: [[ec.kid, ec.publicKey], [rsa.kid, rsa.publicKey]] })), 'trust domain');
  t.true(Bundle.create(TD).isEmpty);
  t.false(b.isEmpty);
  // with() reuses parsed certificates rather than parsing again.
  t.is(b.with({ sequenceNumber: 9 }).x509Authorities[0], b.x509Authorities[0]);
});

test('create rejects bad inputs by reason', (t) => {
  t.is(reasonOf(() => Bundle.create(TD, { jwtAuthorities: [['', ec.publicKey]] })), 'missing-kid');
  t.is(reasonOf(() => Bundle.create(TD, { jwtAuthorities: [['k', ec.privateKey]] })), 'private-key-in-bundle');
  t.is(reasonOf(() => Bundle.create(TD, { jwtAuthorities: [['k', ec.publicKey], ['k', rsa.publicKey]] })), 'duplicate-kid');
  t.is(reasonOf(() => Bundle.create(TD, { x509Authorities: [new Uint8Array([1, 2])] })), 'bad-x509-authority');
  t.is(reasonOf(() => Bundle.create(TD, { sequenceNumber: -1 })), 'bad-sequence');
  t.is(reasonOf(() => Bundle.create(TD, { refreshHintSeconds: 0.5 })), 'bad-refresh-hint');
});

test('a bundle is its own source, for its trust domain only', (t) => {
  const b = full();
  t.is(b.getBundleForTrustDomain(TD), b);
  t.is(b.getBundleForTrustDomain(TrustDomain.parse('other.org')), undefined);
  t.deepEqual(JSON.parse(JSON.stringify(b)), { trustDomain: 'example.org', x509Authorities: 2, jwtAuthorities: ['kid-ec', 'kid-rsa'], sequenceNumber: 3 });
});

test('BundleSet keeps one bundle per trust domain', (t) => {
  const other = TrustDomain.parse('other.org');
  const set = new BundleSet([full(1)]);
  t.is(set.size, 1);
  set.set(full(2));
  t.is(set.size, 1, 'same trust domain replaces');
  t.is(set.get(TD)?.sequenceNumber, 2);
  t.is(set.get('example.org')?.sequenceNumber, 2);
  t.is(set.get('spiffe://example.org')?.sequenceNumber, 2);
  set.set(Bundle.create(other, { x509Authorities: [rootB.der] }));
  t.deepEqual(set.list().map((b) => b.trustDomain.name), ['example.org', 'other.org']);
  t.deepEqual([...set].map((b) => b.trustDomain.name), ['example.org', 'other.org']);
  t.is(set.getBundleForTrustDomain(other)?.x509Authorities.length, 1);
  const snap = set.clone();
  t.true(snap.equals(set));
  t.true(set.delete('other.org'));
  t.false(set.delete(other));
  t.false(set.has(other));
  t.false(snap.equals(set), 'the clone is independent');
  t.true(snap.has(other));
  t.throws(() => set.get('Not A Domain'), { instanceOf: SigilError });
});
