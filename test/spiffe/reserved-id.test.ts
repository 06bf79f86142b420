/** The one rule of reserved identities: the trust domain ID and everything under /sigil/ of the own trust domain. */
import test from 'ava';
import { isReservedIdText, reservedIdKind, reservedIdReason, reservedIdTexts, type ReservedIdKind } from '../../src/spiffe/reserved-id.js';
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';

const TD = TrustDomain.parse('example.org');

const CASES: [string, ReservedIdKind | undefined][] = [
  ['spiffe://example.org', 'trust-domain'],
  ['spiffe://example.org/sigil/server', 'server'],
  ['spiffe://example.org/sigil/agent/join_token/abc', 'agent'],
  ['spiffe://example.org/sigil/agent/x509pop/0123', 'agent'],
  ['spiffe://example.org/sigil', 'reserved'],
  ['spiffe://example.org/sigil/anything/later', 'reserved'],
  ['spiffe://example.org/sigil/server/child', 'reserved'],
  ['spiffe://example.org/sigil/agent', 'reserved'],
  // ordinary IDs, including near misses
  ['spiffe://example.org/web', undefined],
  ['spiffe://example.org/sigilx/server', undefined],
  ['spiffe://example.org/Sigil/server', undefined],
  ['spiffe://example.org/team/sigil/server', undefined],
  // another trust domain's IDs are not this rule's business (they are refused as foreign elsewhere)
  ['spiffe://other.org/sigil/server', undefined],
  ['spiffe://other.org', undefined],
];

for (const [text, kind] of CASES) {
  test(`${text} is ${kind ?? 'ordinary'}`, (t) => {
    const id = SpiffeId.parse(text);
    t.is(reservedIdKind(id, TD), kind);
    t.is(isReservedIdText(text, TD), kind !== undefined, 'the text form of the rule agrees');
    const { exact, prefixes } = reservedIdTexts(TD);
    t.is(exact.includes(text) || prefixes.some((p) => text.startsWith(p)), kind !== undefined, 'the lookup form (exact IDs and prefixes) agrees');
    const reason = reservedIdReason(id, TD);
    if (kind === undefined) {
      t.is(reason, undefined);
      return;
    }
    t.truthy(reason);
    t.true(reason!.includes(text), 'the reason names the ID');
    if (kind !== 'trust-domain') t.true(reason!.includes('spiffe://example.org/sigil/'), 'the reason names the reserved namespace');
  });
}

test('the text form does not match a longer trust domain name', (t) => {
  t.false(isReservedIdText('spiffe://example.orgx/sigil/server', TD));
  t.false(isReservedIdText('spiffe://example.orgx', TD));
  const { exact, prefixes } = reservedIdTexts(TD);
  for (const text of ['spiffe://example.orgx/sigil/server', 'spiffe://example.orgx', 'spiffe://example.orgx/sigil']) {
    t.false(exact.includes(text) || prefixes.some((p) => text.startsWith(p)), text);
  }
});
