import test from 'ava';
import { Secret } from '../../src/common/secret.js';
import { parseCertificate, x509 } from '../../src/common/x509.js';
import { JwtSvidCache } from '../../src/agent/jwt-cache.js';
import { chainUsesTainted, TAINT_JITTER_MAX_MS, taintedIdsOf, taintJitterMs } from '../../src/agent/tainted-authorities.js';
import { createHierarchy } from '../helpers/pki.js';

const skiOf = (der: Uint8Array): string => parseCertificate(der).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '';

test('a chain uses a tainted authority when a certificate in it is that authority or names it as issuer', async (t) => {
  const { intermediate, leaf } = await createHierarchy();
  const other = await createHierarchy();
  const chain = [leaf.der, intermediate.der];
  const interId = skiOf(intermediate.der);
  t.true(chainUsesTainted(chain, new Set([interId])));
  t.true(chainUsesTainted(Buffer.concat(chain.map((c) => Buffer.from(c))), new Set([interId])), 'concatenated DER as the Workload API carries it');
  t.false(chainUsesTainted(chain, new Set([skiOf(other.intermediate.der)])));
  t.false(chainUsesTainted(chain, new Set()));
  t.false(chainUsesTainted(Buffer.from('not der'), new Set([interId])));
  t.deepEqual([...taintedIdsOf([Buffer.from(interId, 'hex')])], [interId.toLowerCase()]);
  t.deepEqual([...taintedIdsOf(undefined)], []);
});

test('the taint jitter stays within its bound', (t) => {
  t.is(taintJitterMs(() => 0), 0);
  t.true(taintJitterMs(() => 0.999999) < TAINT_JITTER_MAX_MS);
});

test('JwtSvidCache.dropSignedBy drops only the tokens whose header names a tainted kid', (t) => {
  const jws = (kid: string): Secret<string> => new Secret(`${Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url')}.e30.sig`);
  const cache = new JwtSvidCache();
  const item = (kid: string) => ({ token: jws(kid), spiffeId: 'spiffe://example.org/w', issuedAtMs: 0, expiresAtMs: 1000, receivedAtMs: 0 });
  cache.put('a', item('old'));
  cache.put('b', item('new'));
  cache.put('c', { ...item('x'), token: new Secret('garbage') });
  t.is(cache.dropSignedBy(new Set(['old'])), 1);
  t.is(cache.size, 2);
  t.is(cache.get('a', 0), undefined);
  t.truthy(cache.get('b', 0));
});
