/**
 * A bundle change must not cost an agent its SyncEntries stream (issue 20, item 3): the agent
 * trusts the new roots for new connections while the open stream keeps its connection. Real
 * server, real agent, real gRPC; the window watched is past the client's keepalive, which is
 * when a closed channel's connection used to be torn down under the stream.
 */
import test from 'ava';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

const KEEPALIVE_WINDOW_MS = 45_000;

test('a new X.509 authority in the bundle leaves the open entry sync stream running', async (t) => {
  t.timeout(120_000);
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  const streamsOpened = (): number => server.logLines.filter((l) => l.includes('"entry sync started"')).length;
  await eventually(() => (a.agent.sync.connected ? true : undefined), 10_000, 'the first full sync');
  t.is(streamsOpened(), 1);

  const bundleUpdates = (): number => a.lines.filter((l) => l.includes('"trust bundle updated"')).length;
  const before = bundleUpdates();
  await server.server.ca.prepare('x509');
  const prepared = server.server.ca.status().x509.find((s) => s.phase === 'prepared');
  t.truthy(prepared);
  await eventually(() => (bundleUpdates() > before ? true : undefined), 10_000, 'the new bundle at the agent');

  // A new entry after the window must still arrive over the first stream.
  await new Promise((r) => setTimeout(r, KEEPALIVE_WINDOW_MS));
  const id = await server.createEntry({ spiffeId: 'spiffe://example.org/w/late', parentId: a.agentId, selectors: ['unix:uid:4242'] });
  await eventually(() => (a.agent.cache.stats().entries >= 1 ? true : undefined), 10_000, 'the late entry at the agent');
  t.truthy(id);
  t.is(streamsOpened(), 1, 'the agent opened a second SyncEntries stream');
  t.false(a.lines.some((l) => l.includes('entry sync stream ended') || l.includes('entry sync failed')), 'the stream ended');
});
