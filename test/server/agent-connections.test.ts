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
import { connect, type Socket } from 'node:net';
import { AGENT_AUTH_MAX_AGE_MS, AgentConnections } from '../../src/server/agent-api/agent-connections.js';
import type { AgentCaller } from '../../src/server/agent-api/caller.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { systemClock, type Clock } from '../../src/common/clock.js';

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

/** A listener of AgentConnections and one real client socket to it; resolves with the socket's peer key. */
async function oneConnection(t: { teardown(fn: () => void | Promise<void>): void }, conns: AgentConnections): Promise<string> {
  const accepted = new Promise<Socket>((resolve) => {
    void conns.listen('127.0.0.1', 0, resolve).then((port) => {
      const client = connect(port, '127.0.0.1');
      t.teardown(() => void client.destroy());
    });
  });
  const socket = await accepted;
  return `${socket.remoteAddress as string}:${socket.remotePort as number}`;
}

function callerOf(agentId: string): AgentCaller {
  return { agentId, node: { spiffeId: agentId } as AgentCaller['node'] };
}

test('an authentication overlapping the forgetting of another agent is remembered; one overlapping its own agent is not', async (t) => {
  const conns = new AgentConnections({ clock: systemClock });
  t.teardown(() => conns.destroy());
  const peer = await oneConnection(t, conns);
  const a = callerOf('spiffe://example.org/agent/a');

  // thousands of agents attesting: some other agent is forgotten during every authentication
  let epoch = conns.epoch;
  conns.forget('spiffe://example.org/agent/b');
  conns.remember(peer, a, epoch);
  t.is(conns.remembered(peer)?.agentId, a.agentId);

  // a change to this agent while its record was being read: the read may predate it
  conns.forget(a.agentId);
  t.is(conns.remembered(peer), undefined);
  epoch = conns.epoch;
  conns.forget(a.agentId);
  conns.remember(peer, a, epoch);
  t.is(conns.remembered(peer), undefined);

  // forgetting every agent overlaps everyone
  epoch = conns.epoch;
  conns.forget();
  conns.remember(peer, a, epoch);
  t.is(conns.remembered(peer), undefined);
  conns.remember(peer, a, conns.epoch);
  t.is(conns.remembered(peer)?.agentId, a.agentId);
});
