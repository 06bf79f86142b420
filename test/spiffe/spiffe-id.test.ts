import test from 'ava';
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { SigilError } from '../../src/common/errors.js';

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigilError && err.code === 'ERR_INVALID_SPIFFE_ID') return err.reason;
    throw err;
  }
  return undefined;
}

const TD_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_CHARS = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

test('every byte value in a trust domain position is accepted only if in [a-z0-9._-]', (t) => {
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCharCode(b);
    if (ch === '/') continue; // ends the trust domain; covered by path tests
    const text = `spiffe://tr${ch}ust.org/path`;
    const reason = reasonOf(() => SpiffeId.parse(text));
    if (TD_CHARS.has(ch)) t.is(reason, undefined, `byte ${b} should be accepted`);
    else t.truthy(reason, `byte ${b} should be rejected`);
    const tdReason = reasonOf(() => TrustDomain.parse(`tr${ch}ust.org`));
    if (TD_CHARS.has(ch)) t.is(tdReason, undefined, `byte ${b} should be accepted in a bare trust domain`);
    else t.truthy(tdReason, `byte ${b} should be rejected in a bare trust domain`);
  }
});

test('every byte value in a path position is accepted only if in [a-zA-Z0-9._-]', (t) => {
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCharCode(b);
    if (ch === '/') continue; // separator
    const text = `spiffe://trust.org/pa${ch}th`;
    const reason = reasonOf(() => SpiffeId.parse(text));
    if (PATH_CHARS.has(ch)) t.is(reason, undefined, `byte ${b} should be accepted`);
    else t.truthy(reason, `byte ${b} should be rejected`);
  }
});

const REJECTS: ReadonlyArray<[string, string]> = [
  ['', 'empty'],
  ['example.org/path', 'bad-scheme'],
  ['SPIFFE://example.org/path', 'bad-scheme'],
  ['https://example.org/path', 'bad-scheme'],
  ['spiffe:/example.org', 'bad-scheme'],
  ['spiffe://', 'missing-trust-domain'],
  ['spiffe:///path', 'missing-trust-domain'],
  ['spiffe://Example.org', 'trust-domain-uppercase'],
  ['spiffe://example.org:8443/path', 'has-port'],
  ['spiffe://user@example.org/path', 'has-userinfo'],
  ['spiffe://example.org/path?x=1', 'has-query'],
  ['spiffe://example.org/path#frag', 'has-fragment'],
  ['spiffe://example.org?x=1', 'has-query'],
  ['spiffe://example.org/pa%20th', 'percent-encoded'],
  ['spiffe://exa%41mple.org', 'percent-encoded'],
  ['spiffe://example.org/', 'trailing-slash'],
  ['spiffe://example.org/path/', 'trailing-slash'],
  ['spiffe://example.org//path', 'empty-segment'],
  ['spiffe://example.org/./path', 'dot-segment'],
  ['spiffe://example.org/path/..', 'dot-segment'],
  ['spiffe://example.org/pa th', 'bad-path-char'],
  ['spiffe://exa mple.org', 'bad-trust-domain-char'],
  [`spiffe://${'a'.repeat(256)}`, 'trust-domain-too-long'],
  [`spiffe://example.org/${'a'.repeat(2048)}`, 'too-long'],
];

for (const [text, reason] of REJECTS) {
  test(`rejects ${JSON.stringify(text.slice(0, 40))} as ${reason}`, (t) => {
    const err = t.throws(() => SpiffeId.parse(text), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_INVALID_SPIFFE_ID');
    t.is(err?.reason, reason);
  });
}

const ACCEPTS = [
  'spiffe://example.org',
  'spiffe://example.org/path',
  'spiffe://example.org/ns/prod/sa/Web-1_x.y',
  'spiffe://a',
  'spiffe://1.2.3.4/x',
  'spiffe://example.org/...',
  'spiffe://example.org/.a',
  `spiffe://${'a'.repeat(255)}`,
  `spiffe://example.org/${'a'.repeat(2048 - 'spiffe://example.org/'.length)}`,
];

for (const text of ACCEPTS) {
  test(`accepts ${JSON.stringify(text.slice(0, 40))} and prints it unchanged`, (t) => {
    const id = SpiffeId.parse(text);
    t.is(id.toString(), text);
    t.is(JSON.stringify(id), JSON.stringify(text));
  });
}

test('parts, equality and membership', (t) => {
  const id = SpiffeId.parse('spiffe://example.org/ns/prod');
  t.is(id.trustDomain.name, 'example.org');
  t.is(id.path, '/ns/prod');
  t.false(id.isTrustDomainId);
  t.true(id.equals(SpiffeId.parse('spiffe://example.org/ns/prod')));
  t.false(id.equals(SpiffeId.parse('spiffe://example.org/ns/Prod')));
  t.true(id.memberOf(TrustDomain.parse('example.org')));
  t.false(id.memberOf(TrustDomain.parse('example.com')));
  t.true(SpiffeId.parse('spiffe://example.org').isTrustDomainId);
});

test('trust domain accepts the bare name and the ID form, not a path', (t) => {
  t.is(TrustDomain.parse('example.org').idString, 'spiffe://example.org');
  t.is(TrustDomain.parse('spiffe://example.org').name, 'example.org');
  t.is(reasonOf(() => TrustDomain.parse('spiffe://example.org/x')), 'trust-domain-has-path');
  t.is(reasonOf(() => TrustDomain.parse('')), 'empty');
  t.is(reasonOf(() => TrustDomain.parse(`${'a'.repeat(256)}`)), 'trust-domain-too-long');
});

test('building IDs from segments validates each segment', (t) => {
  const td = TrustDomain.parse('example.org');
  t.is(td.id('ns', 'prod').toString(), 'spiffe://example.org/ns/prod');
  t.is(td.id().toString(), 'spiffe://example.org');
  t.is(reasonOf(() => td.id('a', '')), 'trailing-slash');
  t.is(reasonOf(() => td.id('', 'a')), 'empty-segment');
  t.is(reasonOf(() => td.id('..')), 'dot-segment');
  t.is(reasonOf(() => td.id('a b')), 'bad-path-char');
});
