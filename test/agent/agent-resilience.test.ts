/**
 * The agent when things go wrong: server stopped and restarted (same data, same port), agent
 * restarted (no new token needed), agent evicted (x509pop re-attests in process; a join
 * token cannot, says so, and recovers once a new token is in the token file), agent banned
 (told apart from evicted by the server's reason: no re-attestation, a clear error, served
 again with the same SVID once unbanned).
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { makeServerDir, startTestServer, type TestServer } from '../helpers/server.js';
import { createCa, createLeaf } from '../helpers/pki.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

/** The uid this test runs as: the workloads it starts run as it too, so no root is needed. */
const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function serialFetched(client: WorkloadApiClient): Promise<string> {
  return (await client.fetchX509Context(AbortSignal.timeout(3000))).svids[0]?.serial ?? '';
}

test.serial('keeps serving cached SVIDs through a server outage and catches up after a restart', async (t) => {
  const dir = await makeServerDir();
  const port = await freePort();
  const serverConfig = { agentApi: { address: `127.0.0.1:${port}` } };
  let server: TestServer = await startTestServer({ dir, config: serverConfig });
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const a = await startTestAgent(t, server);
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/steady', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(entryId), 5000, 'first SVID');
  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  const before = await serialFetched(client);

  await server.stop();
  await eventually(() => (a.agent.sync.connected ? undefined : true), 5000, 'sync to notice the outage');
  // A fresh connection during the outage is still served from the cache.
  const second = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => second.close());
  t.is(await serialFetched(second), before);

  server = await startTestServer({ dir, config: serverConfig });
  await eventually(() => (a.agent.sync.connected ? true : undefined), 10_000, 'sync to reconnect');
  const late = await server.createEntry({ spiffeId: 'spiffe://example.org/w/after-restart', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(late), 10_000, 'entry created after the restart');
  t.is(a.agent.cache.serialOf(entryId), before);
});

test.serial('a restarted agent uses its stored SVID: the spent join token is not needed again', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'sigil-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startTestAgent(t, server, { dir });
  const agentSerial = first.agent.identity.current?.serial;
  await first.stop();

  const second = await startTestAgent(t, server, { dir, reuse: { agentId: first.agentId, tokenFile: first.tokenFile, secrets: first.secrets } });
  t.is(second.agent.agentId(), first.agentId);
  t.true(second.lines.some((l) => l.includes('agent SVID loaded from data dir')));
  t.false(second.lines.some((l) => l.includes('"msg":"agent attested"')));
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/again', parentId: first.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => second.agent.cache.serialOf(entryId), 5000, 'SVID after restart');
  t.truthy(agentSerial);
});

test.serial('an evicted join-token agent says a new token is needed, then re-attests in process when one is written', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await eventually(() => (a.agent.sync.connected ? true : undefined), 5000, 'first sync');
  await server.admin.call('Agents', 'EvictAgent', { spiffe_id: a.agentId });
  // Any call now fails; entry sync notices on the next change.
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/poke', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.lines.find((l) => l.includes('"reason":"join-token-spent"')), 10_000, 'the clear re-attestation error');

  const token = await server.createJoinToken(600);
  writeFileSync(a.tokenFile, token.token.reveal(), { mode: 0o600 });
  a.secrets.push(token.token.reveal());
  await eventually(() => (a.agent.agentId() === token.agentId ? true : undefined), 15_000, 're-attestation with the new token');
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/new-agent', parentId: token.agentId, selectors: [UID_SELECTOR] });
  const serial = await eventually(() => a.agent.cache.serialOf(entryId), 10_000, 'SVID under the new agent ID');
  t.not(token.agentId, a.agentId, 'the new token attested a new agent');
  t.is(a.agent.agentId(), token.agentId);
  t.is(a.agent.cache.svidOf(entryId)?.serial, serial);
  t.truthy(serial);
});

test.serial('an evicted x509pop agent re-attests in process and keeps its agent ID', async (t) => {
  const ca = await createCa({ name: 'CN=node CA' });
  const leaf = await createLeaf({ issuer: ca, subject: 'CN=node-1', noSan: true, eku: null });
  const dir = await makeServerDir();
  writeFileSync(join(dir, 'node-ca.pem'), ca.pem);
  const server = await startTestServer({ dir, config: { nodeAttestors: { x509pop: { caBundleFile: join(dir, 'node-ca.pem') } } } });
  t.teardown(() => server.destroy());
  const agentDir = mkdtempSync(join(tmpdir(), 'sigil-agent-'));
  t.teardown(() => rmSync(agentDir, { recursive: true, force: true }));
  writeFileSync(join(agentDir, 'node.pem'), leaf.pem);
  writeFileSync(join(agentDir, 'node-key.pem'), leaf.key.pkcs8Pem, { mode: 0o600 });
  const a = await startTestAgent(t, server, {
    dir: agentDir,
    reuse: { agentId: '', tokenFile: join(agentDir, 'unused'), secrets: [] },
    config: { nodeAttestor: { x509pop: { certFile: join(agentDir, 'node.pem'), keyFile: join(agentDir, 'node-key.pem') } } },
  });
  const agentId = a.agent.agentId();
  t.regex(agentId, /^spiffe:\/\/example\.org\/sigil\/agent\/x509pop\//);
  const first = await server.createEntry({ spiffeId: 'spiffe://example.org/w/pop', parentId: agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(first), 5000, 'first SVID');
  const serial = a.agent.identity.current?.serial;

  await server.admin.call('Agents', 'EvictAgent', { spiffe_id: agentId });
  const next = await server.createEntry({ spiffeId: 'spiffe://example.org/w/pop-2', parentId: agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(next), 15_000, 'SVID after re-attestation');
  t.not(a.agent.identity.current?.serial, serial);
  t.is(a.agent.agentId(), agentId);
  t.true(a.lines.some((l) => l.includes('agent must attest again')));
});

test.serial('a banned agent says so, does not attest again (its join token stays unspent), and is served again once unbanned', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  // Through the config key, as operators set it.
  const a = await startTestAgent(t, server, { config: { banRecheckInterval: '300ms' } });
  await eventually(() => (a.agent.sync.connected ? true : undefined), 5000, 'first sync');
  const serial = a.agent.identity.current?.serial;
  await server.admin.call('Agents', 'BanAgent', { spiffe_id: a.agentId });
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/while-banned', parentId: a.agentId, selectors: [`unix:uid:${process.getuid?.() ?? 0}`] });
  const banned = await eventually(() => a.lines.find((l) => l.includes('"reason":"agent-banned"') && l.includes('"level":50')), 10_000, 'the ban logged as an error');
  t.true(banned.includes('unban'), banned);
  // Several checks later: still no attempt to attest (that would spend the join token), SVID kept.
  await eventually(() => (a.lines.filter((l) => l.includes('"reason":"agent-banned"')).length >= 3 ? true : undefined), 10_000, 'repeated checks');
  t.false(a.lines.some((l) => l.includes('agent must attest again') || l.includes('join-token-spent')));
  t.is(a.agent.identity.current?.serial, serial);

  await server.admin.call('Agents', 'UnbanAgent', { spiffe_id: a.agentId });
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/after-unban', parentId: a.agentId, selectors: [`unix:uid:${process.getuid?.() ?? 0}`] });
  await eventually(() => a.agent.cache.serialOf(entryId), 15_000, 'served again after the unban');
  t.is(a.agent.agentId(), a.agentId, 'the same agent, not a re-attested one');
  t.true(a.lines.some((l) => l.includes('agent SVID still accepted')));
});

test.serial('an evicted agent is told apart from a banned one: it attests again at once', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server, { bannedRetryMs: 60_000 });
  await eventually(() => (a.agent.sync.connected ? true : undefined), 5000, 'first sync');
  await server.admin.call('Agents', 'EvictAgent', { spiffe_id: a.agentId });
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/poke', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.lines.find((l) => l.includes('agent must attest again')), 10_000, 're-attestation started');
  t.false(a.lines.some((l) => l.includes('"reason":"agent-banned"')));
});
