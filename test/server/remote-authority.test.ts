/**
 * Taint and revoke of one server's authority through another server's admin socket (issue 14):
 * two servers in one process on one PostgreSQL schema (fresh, dropped at the end), an agent
 * stream on each. A taint of A's old CA and JWT key made on B reaches the agents of both
 * servers, A's CA takes it in; a revoke made on B takes A's old CA out of the bundle every
 * agent gets, and A forgets it and deletes its key; A's later saves do not bring either back;
 * the CA manager's rules (only old, taint before revoke, unknown ID) hold across servers too.
 */
import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { decodeCaJournal } from '../../src/ca/ca-journal.js';
import { parseCertificate, x509 } from '../../src/common/x509.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { agentClient, attest, type SyncMessage } from '../helpers/agent-client.js';
import { startServersOn, type TestServer } from '../helpers/server.js';
import { rejectionOf } from './support/rejection.js';
import { SyncWatch } from './support/sync-watch.js';
import { POSTGRES_URL, testSchemaPrefix } from '../helpers/postgres.js';

const URL = POSTGRES_URL;
const SCHEMA = testSchemaPrefix('sigil_hart');
const TD = TrustDomain.parse('example.org');


interface TaintedBundle {
  document: Buffer;
  tainted_x509_subject_key_ids: Buffer[];
  tainted_jwt_key_ids: string[];
}
const bundleOf = (m: SyncMessage): TaintedBundle | undefined => (m.bundle === null ? undefined : (m.bundle as unknown as TaintedBundle));
const taintedX509 = (m: SyncMessage): string[] => (bundleOf(m)?.tainted_x509_subject_key_ids ?? []).map((k) => Buffer.from(k).toString('hex'));
const taintedJwt = (m: SyncMessage): string[] => bundleOf(m)?.tainted_jwt_key_ids ?? [];
/** The subject key identifier (hex) of a certificate: an X.509 authority's ID. */
const ski = (der: Uint8Array): string => parseCertificate(der).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? '';
/** Hex SKIs of the X.509 authorities in a pushed bundle document. */
const anchorsOf = (m: SyncMessage): string[] | undefined => {
  const b = bundleOf(m);
  if (b === undefined) return undefined;
  return Bundle.parseJwks(TD, Buffer.from(b.document).toString('utf8')).x509Authorities.map((c) => ski(c.der));
};

async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function watchAgent(t: { teardown(fn: () => void): void }, s: TestServer): Promise<SyncWatch> {
  const roots = s.server.bundles.x509Anchors();
  const tok = await s.createJoinToken();
  const id = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tok.token));
  const client = agentClient(s.agentTarget, roots, 'example.org', id);
  const watch = new SyncWatch(client.syncEntries(0));
  t.teardown(() => {
    watch.cancel();
    client.close();
  });
  await watch.until(() => watch.messages.some((m) => m.kind === 'FULL' && m.batch_complete), 10_000, 'first FULL');
  return watch;
}

/** Rotates `kind` on `s` (prepare, wait out the propagation margin, activate); returns the authority that became old. */
async function rotate(s: TestServer, kind: 'x509' | 'jwt'): Promise<string> {
  const old = s.server.ca.status()[kind].find((a) => a.phase === 'active')?.id ?? '';
  await s.server.ca.prepare(kind);
  await until(async () => {
    try {
      await s.server.ca.activate(kind);
      return true;
    } catch {
      return false;
    }
  }, `${kind} activation after the propagation margin`);
  return old;
}

test('taint and revoke of server A\'s authorities through server B reach the agents of both and A itself', async (t) => {
  const datastore = { type: 'postgres', connectionString: URL, schema: SCHEMA, maxConnections: 4 };
  const [a, b] = (await startServersOn(t, datastore, ['srv-a', 'srv-b'])) as [TestServer, TestServer];

  // A's old CA and JWT key (an old JWT key is kept only while something it signed is valid)
  await a.server.ca.mintJwtSvid({ spiffeId: SpiffeId.parse('spiffe://example.org/w/any'), audience: ['db'] });
  const oldX509 = await rotate(a, 'x509');
  const oldJwt = await rotate(a, 'jwt');
  await until(() => b.server.bundles.x509Anchors().length === a.server.bundles.x509Anchors().length, 'B to see A\'s rotation');
  const watchA = await watchAgent(t, a);
  const watchB = await watchAgent(t, b);
  t.true(anchorsOf(watchB.messages[0] as SyncMessage)?.includes(oldX509));

  // the rules hold across servers: unknown ID, A's active authority, revoke before taint
  t.deepEqual(await rejectionOf(b.admin.call('LocalAuthority', 'Taint', { kind: 'x509', authority_id: 'ab'.repeat(20) })), { code: 'ERR_NOT_FOUND', reason: 'authority-not-found' });
  const activeA = a.server.ca.status().x509.find((x) => x.phase === 'active')?.id ?? '';
  t.deepEqual(await rejectionOf(b.admin.call('LocalAuthority', 'Taint', { kind: 'x509', authority_id: activeA })), { code: 'ERR_FAILED_PRECONDITION', reason: 'authority-active' });
  t.deepEqual(await rejectionOf(b.admin.call('LocalAuthority', 'Revoke', { kind: 'x509', authority_id: oldX509 })), { code: 'ERR_FAILED_PRECONDITION', reason: 'authority-not-tainted' });

  // taint through B: both servers' agents are told, A's CA marks it (and its SVIDs move on)
  const seenA = watchA.messages.length;
  const seenB = watchB.messages.length;
  await b.admin.call('LocalAuthority', 'Taint', { kind: 'x509', authority_id: oldX509 });
  await b.admin.call('LocalAuthority', 'Taint', { kind: 'jwt', authority_id: oldJwt });
  for (const [w, seen, who] of [[watchA, seenA, 'A'], [watchB, seenB, 'B']] as const) {
    await w.until(() => w.messages.slice(seen).some((m) => taintedX509(m).includes(oldX509)), 20_000, `agent of ${who} told of the tainted CA`);
    await w.until(() => w.messages.slice(seen).some((m) => taintedJwt(m).includes(oldJwt)), 20_000, `agent of ${who} told of the tainted JWT key`);
  }
  await until(() => a.server.ca.status().x509.some((x) => x.id === oldX509 && x.tainted), 'A\'s CA to take the taint in');
  await until(() => a.server.ca.status().jwt.some((x) => x.id === oldJwt && x.tainted), 'A\'s CA to take the JWT taint in');
  t.true(a.logLines.some((l) => l.includes('authority tainted') && l.includes('another server')));
  t.deepEqual(await rejectionOf(b.admin.call('LocalAuthority', 'Taint', { kind: 'x509', authority_id: oldX509 })), { code: 'ERR_FAILED_PRECONDITION', reason: 'already-tainted' });

  // revoke through B: the CA leaves the bundle every agent gets; A forgets it and deletes its key
  const keyId = (decodeCaJournal((await a.server.datastore.getCaJournal(TD.idString, 'srv-a')) ?? new Uint8Array()).x509.find((r) => r.id === oldX509)?.keyId) ?? '';
  t.not(keyId, '');
  const beforeRevokeA = watchA.messages.length;
  const beforeRevokeB = watchB.messages.length;
  await b.admin.call('LocalAuthority', 'Revoke', { kind: 'x509', authority_id: oldX509 });
  for (const [w, seen, who] of [[watchA, beforeRevokeA, 'A'], [watchB, beforeRevokeB, 'B']] as const) {
    await w.until(() => w.messages.slice(seen).some((m) => { const x = anchorsOf(m); return x !== undefined && !x.includes(oldX509); }), 20_000, `agent of ${who} given a bundle without the revoked CA`);
  }
  await until(() => !a.server.ca.status().x509.some((x) => x.id === oldX509), 'A\'s CA to forget the revoked authority');
  await until(() => a.logLines.some((l) => l.includes('revoked through another server')), 'A to delete the revoked key');
  t.false(a.server.ca.x509Authorities().some((c) => ski(c) === oldX509));
  t.false(b.server.bundles.x509Anchors().some((c) => ski(c) === oldX509));

  // A's own later saves neither bring the revoked CA back nor undo the JWT taint
  await a.server.ca.prepare('x509');
  const journal = decodeCaJournal((await a.server.datastore.getCaJournal(TD.idString, 'srv-a')) ?? new Uint8Array());
  t.false(journal.x509.some((r) => r.id === oldX509));
  t.true(journal.jwt.find((r) => r.id === oldJwt)?.tainted);
  // the audit trail names the owner of the authority changed through B
  t.true(b.auditLines.some((l) => l.includes('localauthority.x509.revoke') && l.includes('srv-a')));
});
