/**
 * The server side of a taint: the own bundle on SyncEntries and GetBundle names the tainted
 * authorities (agent.proto Bundle fields 6 and 7), a taint alone (which leaves the bundle
 * document unchanged) pushes the bundles to open streams, a revoke clears the list, and the
 * server's TLS certificate is reissued by the new CA as soon as it is activated.
 */
import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { parseCertificate, x509 } from '../../src/common/x509.js';
import { SpiffeId } from '../../src/spiffe/spiffe-id.js';
import { startTestServer } from '../helpers/server.js';
import { agentClient, attest, type SyncMessage } from '../helpers/agent-client.js';
import { SyncWatch } from './support/sync-watch.js';

interface TaintedBundle {
  document: Buffer;
  tainted_x509_subject_key_ids: Buffer[];
  tainted_jwt_key_ids: string[];
}

const taintOf = (m: SyncMessage): TaintedBundle | undefined => (m.bundle === null ? undefined : (m.bundle as unknown as TaintedBundle));
const hex = (b: TaintedBundle | undefined): string[] => (b?.tainted_x509_subject_key_ids ?? []).map((k) => Buffer.from(k).toString('hex'));

test('a taint pushes the own bundle naming the tainted authorities; revoke clears them; activation reissues the server certificate', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const { ca } = s.server;
  const roots = s.server.x509Authorities();
  const tok = await s.createJoinToken();
  const id = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tok.token));
  const client = agentClient(s.agentTarget, roots, 'example.org', id);
  const watch = new SyncWatch(client.syncEntries(0));
  t.teardown(() => {
    watch.cancel();
    client.close();
  });
  await watch.until(() => watch.messages.some((m) => m.kind === 'FULL' && m.batch_complete), 5000, 'first FULL');
  const full = taintOf(watch.messages[0] as SyncMessage);
  t.deepEqual(hex(full), []);
  t.deepEqual(full?.tainted_jwt_key_ids, []);

  const oldX509 = ca.status().x509.find((a) => a.phase === 'active')?.id ?? '';
  const oldJwt = ca.status().jwt.find((a) => a.phase === 'active')?.id ?? '';
  await ca.prepare('x509');
  const newX509 = (await ca.activate('x509')).id;
  // An old key is kept only while something it signed is still valid.
  await ca.mintJwtSvid({ spiffeId: SpiffeId.parse('spiffe://example.org/w/any'), audience: ['db'] });
  await ca.prepare('jwt');
  await ca.activate('jwt');
  const serverAki = (): string => parseCertificate(s.server.serverSvid.current?.chain[0] ?? new Uint8Array()).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId ?? '';
  await watch.until(() => serverAki() === newX509, 5000, 'server certificate from the new CA');

  const seen = watch.messages.length;
  await ca.taint('x509', oldX509);
  await watch.until(() => watch.messages.slice(seen).some((m) => hex(taintOf(m)).includes(oldX509)), 5000, 'bundle push naming the tainted CA');
  // other pushes (the JWT key's publication) may come first: the one naming the taint names only it
  const pushed = watch.messages.slice(seen).map(taintOf).find((b) => hex(b).length > 0);
  t.deepEqual(hex(pushed), [oldX509]);
  await ca.taint('jwt', oldJwt);
  await watch.until(() => watch.messages.some((m) => taintOf(m)?.tainted_jwt_key_ids.includes(oldJwt) === true), 5000, 'bundle push naming the tainted JWT key');

  const got = (await client.getBundle()).bundle as unknown as TaintedBundle;
  t.deepEqual(hex(got), [oldX509]);
  t.deepEqual(got.tainted_jwt_key_ids, [oldJwt]);

  await ca.revoke('x509', oldX509);
  const after = (await client.getBundle()).bundle as unknown as TaintedBundle;
  t.deepEqual(hex(after), []);
  t.true(s.logLines.some((l) => l.includes('tainted authorities changed')));
});
