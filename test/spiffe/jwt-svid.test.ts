/**
 * JWT-SVID validation per the JWT-SVID standard: every algorithm of section 2.1 accepted,
 * every other rejected; header, sub, aud and exp rules each with a passing and failing case.
 */
import test from 'ava';
import { inspect } from 'node:util';
import { createJwtKey, jwtClaims, signJwt, type TestJwtKey } from '../helpers/pki.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { BundleSet } from '../../src/spiffe/bundle-set.js';
import { JWT_SVID_ALGORITHMS, MAX_JWT_SVID_LENGTH, parseAndValidateJwtSvid, parseJwtSvidInsecure } from '../../src/spiffe/jwt-svid.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { SigilError } from '../../src/spiffe/errors.js';

const TD = TrustDomain.parse('example.org');
const SUB = 'spiffe://example.org/web';
const AUD = 'spiffe://example.org/reports';
const NOW = new Date('2030-01-01T00:00:00Z');

async function reasonOf(fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof SigilError && err.code === 'ERR_INVALID_JWT_SVID') return err.reason;
    throw err;
  }
  return undefined;
}

const keys = new Map<string, TestJwtKey>();
let source: BundleSet;

test.before(() => {
  for (const alg of JWT_SVID_ALGORITHMS) keys.set(alg, createJwtKey(alg, `kid-${alg}`));
  source = new BundleSet([Bundle.create(TD, { jwtAuthorities: [...keys.values()].map((k) => [k.kid, k.publicKey] as const) })]);
});

function es256(): TestJwtKey {
  return keys.get('ES256')!;
}

function validate(token: string, aud: string | string[] = AUD, leewaySeconds?: number): Promise<unknown> {
  return parseAndValidateJwtSvid(token, source, aud, leewaySeconds === undefined ? { now: NOW } : { now: NOW, leewaySeconds });
}

for (const alg of JWT_SVID_ALGORITHMS) {
  test(`accepts ${alg} (section 2.1)`, async (t) => {
    const token = signJwt(keys.get(alg)!, jwtClaims(SUB, AUD, NOW));
    const svid = await parseAndValidateJwtSvid(token, source, AUD, { now: NOW });
    t.is(svid.id.toString(), SUB);
    t.deepEqual(svid.audience, [AUD]);
    t.is(svid.expiry.getTime(), NOW.getTime() + 300_000);
    t.is(svid.header.alg, alg);
    t.is(svid.marshal(), token);
  });
}

interface Case {
  name: string;
  token: () => string;
  reason: string | undefined;
  aud?: string | string[];
  leeway?: number;
}

const base = (): Record<string, unknown> => jwtClaims(SUB, AUD, NOW);
const nowS = NOW.getTime() / 1000;

const CASES: Case[] = [
  // Serialization (5.1)
  { name: 'two segments', token: () => signJwt(es256(), base()).split('.').slice(0, 2).join('.'), reason: 'malformed' },
  { name: 'five segments (JWE)', token: () => `${signJwt(es256(), base())}.a.b`, reason: 'malformed' },
  { name: 'JWS JSON serialization', token: () => JSON.stringify({ payload: 'x', signatures: [] }), reason: 'malformed' },
  { name: 'header not base64url', token: () => `*${signJwt(es256(), base())}`, reason: 'malformed' },
  { name: 'header not JSON', token: () => `${Buffer.from('nope').toString('base64url')}.${signJwt(es256(), base()).split('.').slice(1).join('.')}`, reason: 'malformed' },
  // Size: a validly signed token is still refused once it is longer than the cap
  { name: 'signed token over the size cap', token: () => signJwt(es256(), { ...base(), pad: 'x'.repeat(MAX_JWT_SVID_LENGTH) }), reason: 'too-large' },
  { name: '16 MB of dots', token: () => '.'.repeat(16 * 1024 * 1024), reason: 'too-large' },
  { name: 'empty signature', token: () => `${signJwt(es256(), base()).split('.').slice(0, 2).join('.')}.`, reason: 'malformed' },
  // Header (2)
  { name: 'extra header x5u', token: () => signJwt(es256(), base(), { header: { x5u: 'https://evil' } }), reason: 'extra-header' },
  { name: 'extra header jku', token: () => signJwt(es256(), base(), { header: { jku: 'https://evil' } }), reason: 'extra-header' },
  { name: 'extra header crit', token: () => signJwt(es256(), base(), { header: { crit: ['exp'] } }), reason: 'extra-header' },
  { name: 'extra header b64', token: () => signJwt(es256(), base(), { header: { b64: false } }), reason: 'extra-header' },
  { name: 'alg none', token: () => signJwt(es256(), base(), { header: { alg: 'none' } }), reason: 'bad-alg' },
  { name: 'alg HS256 (key confusion)', token: () => signJwt(es256(), base(), { header: { alg: 'HS256' } }), reason: 'bad-alg' },
  { name: 'alg EdDSA', token: () => signJwt(es256(), base(), { header: { alg: 'EdDSA' } }), reason: 'bad-alg' },
  { name: 'alg lowercase es256', token: () => signJwt(es256(), base(), { header: { alg: 'es256' } }), reason: 'bad-alg' },
  { name: 'alg missing', token: () => signJwt(es256(), base(), { header: { alg: undefined }, signAs: 'ES256' }), reason: 'bad-alg' },
  { name: 'alg not fitting the key (RS256 header, EC key)', token: () => signJwt(es256(), base(), { header: { alg: 'RS256' }, signAs: 'ES256' }), reason: 'bad-alg' },
  { name: 'alg ES384 header on a P-256 key', token: () => signJwt(es256(), base(), { header: { alg: 'ES384' }, signAs: 'ES256' }), reason: 'bad-alg' },
  { name: 'typ JWT', token: () => signJwt(es256(), base(), { header: { typ: 'JWT' } }), reason: undefined },
  { name: 'typ JOSE', token: () => signJwt(es256(), base(), { header: { typ: 'JOSE' } }), reason: undefined },
  { name: 'typ absent', token: () => signJwt(es256(), base(), { header: { typ: undefined } }), reason: undefined },
  { name: 'typ at+jwt', token: () => signJwt(es256(), base(), { header: { typ: 'at+jwt' } }), reason: 'bad-typ' },
  // Section 2.2: kid is optional; the keys of the subject's bundle that fit alg are tried.
  { name: 'kid absent', token: () => signJwt(es256(), base(), { header: { kid: undefined } }), reason: undefined },
  { name: 'kid absent, key not in the bundle', token: () => signJwt(createJwtKey('ES256'), base(), { header: { kid: undefined } }), reason: 'bad-signature' },
  { name: 'kid unknown', token: () => signJwt(es256(), base(), { header: { kid: 'nope' } }), reason: 'unknown-kid' },
  // Signature (4)
  { name: 'signed by another key under a known kid', token: () => signJwt(createJwtKey('ES256', 'kid-ES256'), base()), reason: 'bad-signature' },
  {
    name: 'payload altered after signing',
    token: () => {
      const [h, , s] = signJwt(es256(), base()).split('.');
      return `${h!}.${Buffer.from(JSON.stringify({ ...base(), sub: 'spiffe://example.org/admin' })).toString('base64url')}.${s!}`;
    },
    reason: 'bad-signature',
  },
  // Subject (3.1)
  { name: 'sub missing', token: () => signJwt(es256(), { ...base(), sub: undefined }), reason: 'bad-sub' },
  { name: 'sub not a SPIFFE ID', token: () => signJwt(es256(), { ...base(), sub: 'web' }), reason: 'bad-sub' },
  { name: 'sub with uppercase trust domain', token: () => signJwt(es256(), { ...base(), sub: 'spiffe://Example.org/web' }), reason: 'bad-sub' },
  { name: 'sub of a trust domain without bundle', token: () => signJwt(es256(), { ...base(), sub: 'spiffe://other.org/web' }), reason: 'no-bundle' },
  // Audience (3.2)
  { name: 'aud missing', token: () => signJwt(es256(), { ...base(), aud: undefined }), reason: 'missing-aud' },
  { name: 'aud empty array', token: () => signJwt(es256(), { ...base(), aud: [] }), reason: 'missing-aud' },
  { name: 'aud of another service', token: () => signJwt(es256(), { ...base(), aud: 'spiffe://example.org/other' }), reason: 'audience-mismatch' },
  { name: 'aud array containing ours', token: () => signJwt(es256(), { ...base(), aud: ['x', AUD] }), reason: undefined },
  { name: 'aud array without ours', token: () => signJwt(es256(), { ...base(), aud: ['x', 'y'] }), reason: 'audience-mismatch' },
  { name: 'aud of numbers', token: () => signJwt(es256(), { ...base(), aud: [1] }), reason: 'malformed' },
  { name: 'expected audiences all present', token: () => signJwt(es256(), { ...base(), aud: [AUD, 'a'] }), aud: ['a', AUD], reason: undefined },
  { name: 'expected audiences only one present', token: () => signJwt(es256(), base()), aud: ['a', AUD], reason: 'audience-mismatch' },
  { name: 'expected audiences none present', token: () => signJwt(es256(), base()), aud: ['a', 'b'], reason: 'audience-mismatch' },
  { name: 'no expected audience at all', token: () => signJwt(es256(), base()), aud: [], reason: 'audience-mismatch' },
  // Expiration (3.3)
  { name: 'exp missing', token: () => signJwt(es256(), { ...base(), exp: undefined }), reason: 'missing-exp' },
  { name: 'exp not a number', token: () => signJwt(es256(), { ...base(), exp: '2030' }), reason: 'malformed' },
  { name: 'exp long past', token: () => signJwt(es256(), { ...base(), exp: nowS - 3600 }), reason: 'expired' },
  { name: 'exp 10s past, inside default leeway', token: () => signJwt(es256(), { ...base(), exp: nowS - 10 }), reason: undefined },
  { name: 'exp 31s past, beyond default leeway', token: () => signJwt(es256(), { ...base(), exp: nowS - 31 }), reason: 'expired' },
  { name: 'exp 10s past with zero leeway', token: () => signJwt(es256(), { ...base(), exp: nowS - 10 }), leeway: 0, reason: 'expired' },
  { name: 'exp exactly now with zero leeway', token: () => signJwt(es256(), { ...base(), exp: nowS }), leeway: 0, reason: 'expired' },
  { name: 'nbf in the future', token: () => signJwt(es256(), { ...base(), nbf: nowS + 3600 }), reason: 'not-yet-valid' },
  { name: 'nbf 10s ahead, inside leeway', token: () => signJwt(es256(), { ...base(), nbf: nowS + 10 }), reason: undefined },
  // Other claims are allowed (3)
  { name: 'private claims present', token: () => signJwt(es256(), { ...base(), jti: 'abc', tenant: 'x' }), reason: undefined },
];

for (const c of CASES) {
  test(`${c.reason === undefined ? 'accepts' : `rejects ${c.reason}`}: ${c.name}`, async (t) => {
    const token = c.token();
    t.is(await reasonOf(() => validate(token, c.aud, c.leeway)), c.reason);
  });
}

test('parseJwtSvidInsecure reads claims without a key or clock, but keeps the structural rules', async (t) => {
  const expired = signJwt(createJwtKey('ES256', 'unknown'), { ...base(), exp: nowS - 86400, aud: ['a', 'b'], jti: 'j1' });
  const svid = parseJwtSvidInsecure(expired);
  t.is(svid.id.toString(), SUB);
  t.deepEqual(svid.audience, ['a', 'b']);
  t.is(svid.expiry.getTime(), (nowS - 86400) * 1000);
  t.is(svid.issuedAt?.getTime(), NOW.getTime());
  t.is(svid.jti, 'j1');
  t.is(svid.claims.jti, 'j1');
  const rules: ReadonlyArray<[string, string]> = [
    [signJwt(es256(), base(), { header: { alg: 'none' } }), 'bad-alg'],
    [signJwt(es256(), base(), { header: { x5c: [] } }), 'extra-header'],
    [signJwt(es256(), { ...base(), sub: 'x' }), 'bad-sub'],
    [signJwt(es256(), { ...base(), aud: undefined }), 'missing-aud'],
    [signJwt(es256(), { ...base(), exp: undefined }), 'missing-exp'],
    ['a.b', 'malformed'],
  ];
  for (const [token, reason] of rules) t.is(await reasonOf(async () => parseJwtSvidInsecure(token)), reason, reason);
});

test('the token never appears in JSON, inspect or string output', async (t) => {
  const token = signJwt(es256(), { ...base(), jti: 'trace-1' });
  const svid = await parseAndValidateJwtSvid(token, source, AUD, { now: NOW });
  const printed = [JSON.stringify(svid), JSON.stringify({ svid }), inspect(svid), String(svid), `${svid}`].join('\n');
  t.false(printed.includes(token.split('.')[2]!));
  t.false(printed.includes('eyJ'));
  t.true(printed.includes('trace-1'), 'the jti is the loggable handle');
  t.deepEqual(JSON.parse(JSON.stringify(svid)), { id: SUB, audience: [AUD], expiry: new Date(NOW.getTime() + 300_000).toISOString(), jti: 'trace-1' });
  t.is(svid.withHint('db').hint, 'db');
  t.is(svid.withHint('db').marshal(), token);
});

test('a JWT bundle parsed from Workload API bytes validates tokens', async (t) => {
  const bytes = source.get(TD)!.jwtToJwksBytes();
  const fromWire = Bundle.fromJwtJwks(TD, bytes);
  for (const alg of JWT_SVID_ALGORITHMS) {
    const svid = await parseAndValidateJwtSvid(signJwt(keys.get(alg)!, base()), fromWire, AUD, { now: NOW });
    t.is(svid.header.alg, alg);
  }
});

test('validation defaults to the current time', async (t) => {
  const token = signJwt(es256(), jwtClaims(SUB, AUD));
  t.is((await parseAndValidateJwtSvid(token, source, AUD)).id.toString(), SUB);
  const old = signJwt(es256(), jwtClaims(SUB, AUD, new Date(Date.now() - 3600_000), 300));
  t.is(await reasonOf(() => parseAndValidateJwtSvid(old, source, AUD)), 'expired');
});
