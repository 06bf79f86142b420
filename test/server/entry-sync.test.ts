import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { agentClient, attest, type AgentIdentity } from '../helpers/agent-client.js';
import { SyncWatch } from './support/sync-watch.js';

const SERVER_ID = 'spiffe://example.org/sigil/server';

async function agentWithStream(s: TestServer, t: { teardown(fn: () => void): void }): Promise<{ id: AgentIdentity; tokenId: string; watch: SyncWatch }> {
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
  return { id, tokenId: tok.tokenId, watch };
}

const quiet = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('pushed deltas: only the owner gets a new entry; descendants follow; a deleted node alias or middle entry revokes what hung from it', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const a = await agentWithStream(s, t);
  const b = await agentWithStream(s, t);

  const forA = await s.createEntry({ spiffeId: 'spiffe://example.org/a/web', parentId: a.id.spiffeId, selectors: ['unix:uid:1'] });
  await a.watch.holds([forA]);
  const forB = await s.createEntry({ spiffeId: 'spiffe://example.org/b/web', parentId: b.id.spiffeId, selectors: ['unix:uid:1'] });
  await b.watch.holds([forB]);
  await quiet(200);
  t.false(b.watch.everSent().has(forA));
  t.false(a.watch.everSent().has(forB));
  // a DELTA carries only what changed
  const deltaWithA = a.watch.messages.find((m) => m.kind === 'DELTA' && m.entries.some((e) => e.id === forA));
  t.deepEqual(deltaWithA?.entries.map((e) => e.id), [forA]);

  // an entry whose SPIFFE ID already has children: the children come with it
  const grandchild = await s.createEntry({ spiffeId: 'spiffe://example.org/a/grandchild', parentId: 'spiffe://example.org/a/middle', selectors: ['unix:uid:3'] });
  await quiet(150);
  t.false(a.watch.held().has(grandchild));
  const middle = await s.createEntry({ spiffeId: 'spiffe://example.org/a/middle', parentId: a.id.spiffeId, selectors: ['unix:uid:2'] });
  await a.watch.holds([middle, grandchild]);
  // deleting the middle entry revokes the grandchild too
  await s.admin.call('Entries', 'BatchDeleteEntry', { ids: [middle] });
  await a.watch.holds([forA], [middle, grandchild]);
  const revoked = a.watch.messages.filter((m) => m.kind === 'DELTA').flatMap((m) => m.deleted_entry_ids);
  t.true(revoked.includes(middle) && revoked.includes(grandchild));

  // node alias matching A's node selector (join_token:id:<token id>), with a workload and its child
  const alias = await s.createEntry({ spiffeId: 'spiffe://example.org/nodes/a', parentId: SERVER_ID, selectors: [`join_token:id:${a.tokenId}`] });
  const viaAlias = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/api', parentId: 'spiffe://example.org/nodes/a', selectors: ['unix:uid:7'] });
  const belowIt = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/api/job', parentId: 'spiffe://example.org/svc/api', selectors: ['unix:uid:8'] });
  await a.watch.holds([viaAlias, belowIt]);
  t.false(a.watch.everSent().has(alias)); // aliases are never sent
  await quiet(150);
  t.false(b.watch.everSent().has(viaAlias));
  await s.admin.call('Entries', 'BatchDeleteEntry', { ids: [alias] });
  await a.watch.holds([forA], [viaAlias, belowIt]);
  const lastDeletes = a.watch.messages.filter((m) => m.kind === 'DELTA').flatMap((m) => m.deleted_entry_ids);
  t.true(lastDeletes.includes(viaAlias) && lastDeletes.includes(belowIt));

  // an update is sent as an upsert with its new revision; moving an entry to B moves it
  const upd = await s.admin.call<{ results: { status: { code: number } }[] }>('Entries', 'BatchUpdateEntry', {
    entries: [{ id: forA, spiffe_id: 'spiffe://example.org/a/web', parent_id: b.id.spiffeId, selectors: [{ type: 'unix', value: 'uid:1' }] }],
  });
  t.is(upd.results[0]?.status.code, 0);
  await a.watch.holds([], [forA]);
  await b.watch.holds([forA, forB]);

  // B never saw anything of A's
  t.true([...b.watch.everSent()].every((id) => id === forA || id === forB));
});

test('an entry that expires is revoked when the clock passes its expiry', async (t) => {
  const s = await startTestServer({ behindMs: 5 * 60_000 });
  t.teardown(() => s.destroy());
  const a = await agentWithStream(s, t);
  const expiresAt = Math.floor(s.clock.nowMs() / 1000) + 60;
  const r = await s.admin.call<{ results: { entry: { id: string } }[] }>('Entries', 'BatchCreateEntry', {
    entries: [{ spiffe_id: 'spiffe://example.org/short', parent_id: a.id.spiffeId, selectors: [{ type: 'unix', value: 'uid:1' }], expires_at: expiresAt }],
  });
  const id = r.results[0]?.entry.id as string;
  await a.watch.holds([id]);
  s.clock.advance(61_000);
  await a.watch.holds([], [id]);
  t.true(a.watch.messages.some((m) => m.kind === 'DELTA' && m.deleted_entry_ids.includes(id)));
});

test('an entry written to the datastore by another writer reaches the stream through the event log', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const a = await agentWithStream(s, t);
  const e = await s.server.datastore.createEntry({
    spiffeId: 'spiffe://example.org/external', parentId: a.id.spiffeId, selectors: [{ type: 'unix', value: 'uid:9' }],
    x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0,
  });
  await a.watch.holds([e.id], [], 5000);
  t.true(a.watch.held().has(e.id));
});

test('banning or evicting an agent ends its sync stream; other streams go on', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const a = await agentWithStream(s, t);
  const b = await agentWithStream(s, t);
  const c = await agentWithStream(s, t);
  await s.admin.call('Agents', 'BanAgent', { spiffe_id: a.id.spiffeId });
  await a.watch.until(() => a.watch.ended, 5000, 'stream end');
  t.is(a.watch.error?.code, 'ERR_PERMISSION_DENIED');
  t.is(a.watch.error?.reason, 'agent-banned');
  await s.admin.call('Agents', 'EvictAgent', { spiffe_id: c.id.spiffeId });
  await c.watch.until(() => c.watch.ended, 5000, 'stream end');
  t.is(c.watch.error?.code, 'ERR_PERMISSION_DENIED');
  t.false(b.watch.ended);
  const forB = await s.createEntry({ spiffeId: 'spiffe://example.org/b/after', parentId: b.id.spiffeId, selectors: ['unix:uid:1'] });
  await b.watch.holds([forB]);
  t.is((await s.server.metrics.syncStreams.get()).values[0]?.value, 1);
});
