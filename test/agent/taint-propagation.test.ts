/**
 * An X.509 authority taint end to end, in real time: a real server and a real agent, a real
 * Workload API stream. After prepare → activate → taint every served SVID, the agent SVID and
 * the server's TLS certificate chain to the new authority within a few seconds (checked by
 * authority key identifier and by `openssl verify` against the new root alone); then revoke
 * works, the workload stream keeps receiving valid SVIDs and the agent keeps syncing.
 */
import test from 'ava';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import { parseCertificate, toPem, x509 } from '../../src/common/x509.js';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

/** The uid this test runs as: the workloads it starts run as it too, so no root is needed. */
const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;

/** The authority key identifier of a certificate, lowercase hex. */
function akiOf(der: Uint8Array): string {
  return parseCertificate(der).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase() ?? '';
}

test.serial('after activate and taint every SVID, the agent SVID and the server certificate move to the new authority; revoke then breaks nothing', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const { ca } = server.server;
  const a = await startTestAgent(t, server);
  const entryIds = [
    await server.createEntry({ spiffeId: 'spiffe://example.org/w/one', parentId: a.agentId, selectors: [UID_SELECTOR] }),
    await server.createEntry({ spiffeId: 'spiffe://example.org/w/two', parentId: a.agentId, selectors: [UID_SELECTOR] }),
  ];

  const client = new WorkloadApiClient({ address: a.agent.address, backoff: { initialMs: 50, maxMs: 200 } });
  t.teardown(() => client.close());
  const watch = new AbortController();
  t.teardown(() => watch.abort());
  let latest: X509Context | undefined;
  let updates = 0;
  void client.watchX509Context(
    {
      onUpdate: (ctx) => {
        latest = ctx;
        updates++;
      },
    },
    watch.signal,
  );
  await eventually(() => (latest !== undefined && latest.svids.length === 2 ? latest : undefined), 10_000, 'both SVIDs on the stream');

  const oldId = ca.status().x509.find((s) => s.phase === 'active')?.id ?? '';
  t.not(oldId, '');
  t.true(latest?.svids.every((s) => akiOf(s.leaf.der) === oldId));
  const oldSerials = new Set(entryIds.map((id) => a.agent.cache.serialOf(id)));
  const oldAgentSerial = a.agent.identity.current?.serial;

  await ca.prepare('x509');
  const activated = await ca.activate('x509');
  const newId = activated.id;
  t.not(newId, oldId);
  // The server's own certificate moves at activation, not half an hour later.
  await eventually(() => (akiOf(server.server.serverSvid.current?.chain[0] ?? new Uint8Array()) === newId ? true : undefined), 5000, 'server SVID from the new CA');

  const tainted = Date.now();
  await ca.taint('x509', oldId);
  const moved = await eventually(
    () => {
      const ctx = latest;
      if (ctx === undefined || ctx.svids.length !== 2 || !ctx.svids.every((s) => akiOf(s.leaf.der) === newId)) return undefined;
      const agentChain = a.agent.identity.current?.chainDer ?? [];
      if (akiOf(agentChain[0] ?? new Uint8Array()) !== newId) return undefined;
      return ctx;
    },
    10_000,
    'workload and agent SVIDs from the new CA',
  );
  t.log(`taint → every SVID re-minted: ${Date.now() - tainted} ms`);
  t.true(Date.now() - tainted < 8000);
  for (const id of entryIds) t.false(oldSerials.has(a.agent.cache.serialOf(id)));
  t.not(a.agent.identity.current?.serial, oldAgentSerial);
  t.true(a.lines.some((l) => l.includes('re-minting the X509-SVIDs it signed') && l.includes('"svids":2')));

  // Verified against the new root alone: nothing depends on the tainted one any more.
  const newRoot = server.server.x509Authorities().find((c) => parseCertificate(c).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId?.toLowerCase() === newId);
  t.truthy(newRoot);
  const rootPem = toPem(newRoot ?? new Uint8Array(), 'CERTIFICATE');
  const pemOf = (chain: readonly Uint8Array[]): string => chain.map((c) => toPem(c, 'CERTIFICATE')).join('');
  for (const s of moved.svids) {
    const v = await opensslVerify({ roots: [rootPem], leaf: s.certificatesPem(), flags: ['-purpose', 'sslclient'] });
    t.true(v.ok, v.output);
  }
  const agentV = await opensslVerify({ roots: [rootPem], leaf: pemOf(a.agent.identity.current?.chainDer ?? []), flags: ['-purpose', 'sslclient'] });
  t.true(agentV.ok, agentV.output);
  const serverV = await opensslVerify({ roots: [rootPem], leaf: pemOf(server.server.serverSvid.current?.chain ?? []), flags: ['-purpose', 'sslserver'] });
  t.true(serverV.ok, serverV.output);

  // Revoke: the bundle loses the old root; the stream gets it and its SVIDs still verify.
  const before = updates;
  await ca.revoke('x509', oldId);
  const after = await eventually(() => (updates > before && latest?.bundles.get('example.org')?.x509Authorities.length === 1 ? latest : undefined), 10_000, 'bundle without the revoked root');
  const bundlePem = after.bundles.get('example.org')?.x509ToPem() ?? '';
  for (const s of after.svids) {
    const v = await opensslVerify({ roots: [bundlePem], leaf: s.certificatesPem(), flags: ['-purpose', 'sslclient'] });
    t.true(v.ok, v.output);
  }

  // The agent keeps syncing, also over a fresh TLS connection that trusts only the new root.
  a.agent.sync.reconnect();
  const late = await server.createEntry({ spiffeId: 'spiffe://example.org/w/late', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(late), 10_000, 'an entry created after revoke minted');
  const withLate = await eventually(() => (latest?.svids.length === 3 ? latest : undefined), 10_000, 'the late SVID on the stream');
  t.true(withLate.svids.every((s) => akiOf(s.leaf.der) === newId));
  t.false(server.logLines.some((l) => l.includes('PRIVATE KEY')));
});

test.serial('a JWT key taint drops the JWT-SVIDs the agent cached from that key; the next fetch is signed by the active key', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const { ca } = server.server;
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/jwt', parentId: a.agentId, selectors: [UID_SELECTOR] });
  const client = new WorkloadApiClient({ address: a.agent.address, backoff: { initialMs: 50, maxMs: 200 } });
  t.teardown(() => client.close());
  const fetchJwt = (): Promise<string | undefined> =>
    eventually(async () => {
      try {
        return (await client.fetchJwtSvid({ audience: 'db' }, AbortSignal.timeout(2000))).header.kid;
      } catch {
        return undefined;
      }
    }, 10_000, 'a JWT-SVID');

  const oldKid = await fetchJwt();
  t.is(oldKid, ca.status().jwt.find((s) => s.phase === 'active')?.id);
  await ca.prepare('jwt');
  const newKid = (await ca.activate('jwt')).id;
  // Still cached (less than half of its life passed): activation alone does not replace it.
  t.is(await fetchJwt(), oldKid);
  await ca.taint('jwt', oldKid ?? '');
  await eventually(() => a.lines.some((l) => l.includes('dropped the cached JWT-SVIDs it signed') && l.includes('"jwtSvids":1')) || undefined, 10_000, 'the cache dropped the token');
  t.is(await fetchJwt(), newKid);
  t.false(a.lines.some((l) => /eyJ[\w-]+\.eyJ/.test(l)), 'no token in the agent log');
});
