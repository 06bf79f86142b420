/**
 * The CA itself refuses reserved IDs (issue 10): without the capability it minted, no path can
 * have the server's ID, an agent ID or anything under /sigil/ signed, and only the server
 * capability yields the server marker agents require.
 */
import test from 'ava';
import { isSigilError } from '../../src/common/errors.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReservedIssuance } from '../../src/ca/reserved-issuance.js';
import { SERVER_SVID_MARKER, SERVER_SVID_MARKER_OID, hasServerSvidMarker } from '../../src/spiffe/reserved-id.js';
import { SpiffeId } from '../../src/spiffe/spiffe-id.js';
import { TD, makeCa, makeCsr, openssl, tempDir } from './helpers.js';

const SERVER = SpiffeId.parse('spiffe://example.org/sigil/server');
const AGENT = SpiffeId.parse('spiffe://example.org/sigil/agent/join_token/t1');
const OTHER_RESERVED = SpiffeId.parse('spiffe://example.org/sigil/later');
const WORKLOAD = SpiffeId.parse('spiffe://example.org/web');

/** The marker as openssl reads it (its own OID decoder), and as the agent's check reads it. */
async function hasMarker(leaf: Buffer): Promise<boolean> {
  const text = await opensslText(leaf);
  const byOpenssl = text.includes(`${SERVER_SVID_MARKER_OID}:`) && text.includes(SERVER_SVID_MARKER);
  if (byOpenssl !== hasServerSvidMarker(leaf)) throw new Error('openssl and hasServerSvidMarker disagree');
  return byOpenssl;
}

async function opensslText(der: Buffer): Promise<string> {
  const { dir, cleanup } = await tempDir();
  try {
    const path = join(dir, 'leaf.der');
    await writeFile(path, der);
    return await openssl(['x509', '-inform', 'der', '-in', path, '-noout', '-text']);
  } finally {
    await cleanup();
  }
}

async function reasonOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return 'signed';
  } catch (err) {
    if (!isSigilError(err)) throw err;
    if (err.code !== 'ERR_INVALID_ARGUMENT') return `${err.code}`;
    return err.reason;
  }
}

for (const threads of [0, 1]) {
  test(`without a capability no reserved ID is signed, X.509 or JWT (${threads} signing threads)`, async (t) => {
    const { ca } = await makeCa({ signingThreads: threads });
    t.teardown(() => ca.close());
    const { csr, publicKey } = await makeCsr();
    for (const id of [SERVER, AGENT, OTHER_RESERVED]) {
      t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: id })), 'reserved-spiffe-id', id.toString());
      t.is(await reasonOf(ca.signX509Svid({ publicKey, spiffeId: id })), 'reserved-spiffe-id', id.toString());
      t.is(await reasonOf(ca.mintJwtSvid({ spiffeId: id, audience: ['a'] })), 'reserved-spiffe-id', id.toString());
    }
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: TD.toSpiffeId() })), 'not-leaf-id');
    const err = await t.throwsAsync(ca.signX509SvidFromCsr({ csr, spiffeId: SERVER }));
    t.regex(err?.message ?? '', /reserved for Sigil/, 'the refusal names the rule');
    // a workload SVID is signed as before, and never carries the server marker
    const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: WORKLOAD });
    t.false(await hasMarker(svid.chain[0] as Buffer));
  });

  test(`each capability opens its own kind of ID only; only the server one adds the marker (${threads} signing threads)`, async (t) => {
    const { ca } = await makeCa({ signingThreads: threads });
    t.teardown(() => ca.close());
    const { csr } = await makeCsr();
    const { server, agent } = ca.takeReservedIssuance();
    const serverSvid = await ca.signX509SvidFromCsr({ csr, spiffeId: SERVER, issuance: server });
    t.true(await hasMarker(serverSvid.chain[0] as Buffer), 'the server SVID carries the marker');
    const agentSvid = await ca.signX509SvidFromCsr({ csr, spiffeId: AGENT, issuance: agent });
    t.false(await hasMarker(agentSvid.chain[0] as Buffer), 'an agent SVID does not');
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: SERVER, issuance: agent })), 'reserved-spiffe-id');
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: AGENT, issuance: server })), 'reserved-spiffe-id');
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: OTHER_RESERVED, issuance: server })), 'reserved-spiffe-id');
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: OTHER_RESERVED, issuance: agent })), 'reserved-spiffe-id');
    // the server capability cannot lend its marker to a workload ID
    t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: WORKLOAD, issuance: server })), 'issuance-mismatch');
    // JWT-SVIDs are never opened
    t.is(await reasonOf(ca.mintJwtSvid({ spiffeId: SERVER, audience: ['a'] })), 'reserved-spiffe-id');
  });
}

test('the capabilities are handed out once, and only the objects the CA minted count', async (t) => {
  const { ca } = await makeCa();
  const { ca: otherCa } = await makeCa();
  const { csr } = await makeCsr();
  ca.takeReservedIssuance();
  const second = t.throws(() => ca.takeReservedIssuance());
  t.true(isSigilError(second) && second.reason === 'issuance-taken');
  const lookAlike: ReservedIssuance = { kind: 'server' };
  t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: SERVER, issuance: lookAlike })), 'issuance-unknown');
  const foreign = otherCa.takeReservedIssuance();
  t.is(await reasonOf(ca.signX509SvidFromCsr({ csr, spiffeId: SERVER, issuance: foreign.server })), 'issuance-unknown');
});
