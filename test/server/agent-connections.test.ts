/**
 * The agent authenticated on a connection is remembered for that connection (issue 20, item 6),
 * and forgotten whenever the answer may have changed: an evicted or banned agent's open
 * connection is refused on its next call, an SVID superseded by a renewal is refused on the
 * connection that still presents it, and a change this server was not told about (another server
 * on the same datastore) takes effect within AGENT_AUTH_MAX_AGE_MS. Real server, the agent's own
 * client over mTLS, one connection per client.
 */
import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { generateKeyAndCsr } from '../../src/agent/csr.js';
import { AgentServerClient } from '../../src/agent/server-client.js';
import { SigilError } from '../../src/common/errors.js';
import { AGENT_AUTH_MAX_AGE_MS } from '../../src/server/agent-api/agent-connections.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { Clock } from '../../src/common/clock.js';

async function attestedClient(t: { teardown(fn: () => void): void }, s: TestServer<Clock>) {
  const client = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: TrustDomain.parse('example.org'), roots: s.server.x509Authorities() });
  t.teardown(() => client.close());
  const key = await generateKeyAndCsr();
  const token = await s.createJoinToken();
  const attested = await client.attest(new JoinTokenAgentAttestor(token.token), key.csrDer);
  client.setIdentity({ chainDer: attested.svid.cert_chain, keyPkcs8Der: key.keyPkcs8Der });
  return { client, agentId: attested.svid.spiffe_id, key, attested };
}

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof SigilError ? `${err.code}/${err.reason}` : String(err);
  }
}

test('an evicted agent is refused on its next call over the connection it already has; so is a banned one', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const evicted = await attestedClient(t, s);
  const banned = await attestedClient(t, s);
  const bystander = await attestedClient(t, s);
  // each connection's agent is authenticated and remembered
  for (const a of [evicted, banned, bystander]) await a.client.getBundle();
  for (const a of [evicted, banned, bystander]) await a.client.getBundle();

  await s.admin.call('Agents', 'EvictAgent', { spiffe_id: evicted.agentId });
  await s.admin.call('Agents', 'BanAgent', { spiffe_id: banned.agentId });
  t.is(await refusal(evicted.client.getBundle()), 'ERR_PERMISSION_DENIED/agent-unknown');
  t.is(await refusal(banned.client.getBundle()), 'ERR_PERMISSION_DENIED/agent-banned');
  t.is(await refusal(bystander.client.getBundle()), undefined);
  await s.admin.call('Agents', 'UnbanAgent', { spiffe_id: banned.agentId });
  t.is(await refusal(banned.client.getBundle()), undefined);
});

test('after a renewal, the superseded SVID is refused on the connection that still presents it', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const old = await attestedClient(t, s);
  await old.client.getBundle();
  const next = await generateKeyAndCsr();
  const renewed = await old.client.renew(next.csrDer);
  // the old SVID is still current until the new one is used
  await old.client.getBundle();
  const fresh = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: TrustDomain.parse('example.org'), roots: s.server.x509Authorities() });
  t.teardown(() => fresh.close());
  fresh.setIdentity({ chainDer: renewed.cert_chain, keyPkcs8Der: next.keyPkcs8Der });
  await fresh.getBundle();
  t.is(await refusal(old.client.getBundle()), 'ERR_PERMISSION_DENIED/agent-svid-superseded');
  t.is(await refusal(fresh.getBundle()), undefined);
});

test('a change this server was not told about (another server on the datastore) takes effect within the bound', async (t) => {
  const s = await startTestServer({ behindMs: 10 * 60_000 });
  t.teardown(() => s.destroy());
  const a = await attestedClient(t, s);
  await a.client.getBundle();
  // written straight to the datastore, as another server would: no change is told here
  const node = await s.server.datastore.getAttestedNode(a.agentId);
  if (node === undefined) return t.fail('agent not recorded');
  await s.server.datastore.updateAttestedNode({ ...node, banned: true });
  // remembered: the same connection is still served (this is what the cache saves)
  t.is(await refusal(a.client.getBundle()), undefined);
  s.clock.advance(AGENT_AUTH_MAX_AGE_MS);
  t.is(await refusal(a.client.getBundle()), 'ERR_PERMISSION_DENIED/agent-banned');
});
