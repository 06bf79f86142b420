/**
 * The SVID cache against a real server: the memory policy (eager up to maxSize, always for
 * connected workloads, idle SVIDs dropped after the grace period), real-time rotation with a
 * short TTL, and JWT-SVIDs minted once per (identity, audience set) and validated.
 */
import test from 'ava';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { ManualClock } from '../../src/common/clock.js';
import { isSigilError } from '../../src/common/errors.js';
import { parseSelector } from '../../src/spiffe/selector.js';
import type { WorkloadUpdate } from '../../src/agent/workload-api/identity-source.js';
import { startTestServer } from '../helpers/server.js';
import { startWorkload, writeWorkloadScript, type WorkloadEvent } from './workload-api/support/workload-child.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

/** The uid this test runs as: the workloads it starts run as it too, so no root is needed. */
const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;

test.serial('memory policy: eager up to maxSize, always for connected workloads, idle ones dropped after the grace period', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const clock = new ManualClock(Date.now());
  const a = await startTestAgent(t, server, { clock, config: { svidCache: { maxSize: 1, idleGrace: '1m' } } });
  const cache = a.agent.cache;
  const ids = await Promise.all(
    ['a', 'b', 'c'].map((n, i) => server.createEntry({ spiffeId: `spiffe://example.org/w/${n}`, parentId: a.agentId, selectors: [`unix:uid:${1001 + i}`] })),
  );
  await eventually(() => (cache.stats().entries === 3 && cache.stats().svids === 1 ? true : undefined), 5000, 'one eager SVID');

  const updates: WorkloadUpdate[][] = [[], []];
  const unsubA = cache.subscribe([parseSelector('unix:uid:1001')], (u) => updates[0]?.push(u));
  const unsubB = cache.subscribe([parseSelector('unix:uid:1002')], (u) => updates[1]?.push(u));
  await eventually(() => (updates[0]?.length && updates[1]?.length ? true : undefined), 5000, 'both workloads served');
  t.is(updates[0]?.[0]?.svids[0]?.spiffeId, 'spiffe://example.org/w/a');
  t.is(updates[1]?.[0]?.svids[0]?.spiffeId, 'spiffe://example.org/w/b');
  t.deepEqual(cache.cachedEntryIds().sort(), [ids[0], ids[1]].sort());

  unsubA();
  clock.advance(10_000);
  unsubB();
  clock.advance(30_000); // both idle, both within the grace period
  t.is(cache.stats().svids, 2);
  clock.advance(31_000); // a's grace is over; b is the most recently used and fits in maxSize
  t.deepEqual(cache.cachedEntryIds(), [ids[1]]);
  clock.advance(60_000);
  t.deepEqual(cache.cachedEntryIds(), [ids[1]]);
  t.is(cache.stats().subscribers, 0);
});

test.serial('with a 4 s TTL the agent rotates in real time and every SVID reaches the open stream', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/short', parentId: a.agentId, selectors: [UID_SELECTOR], x509SvidTtlSeconds: 4 });
  const script = writeWorkloadScript();
  const w = await startWorkload(script, a.socketPath);
  t.teardown(() => w.workload.stop());
  const seen = new Set<string>();
  // Open the stream once the entry is on the agent (before that the caller has no identity).
  await eventually(() => (a.agent.cache.stats().svids > 0 ? true : undefined), 5000, 'first SVID');
  const started = Date.now();
  w.workload.send({ op: 'x509', tag: 's' });
  await eventually(() => {
    t.falsy(w.workload.events.find((e) => e.event === 'error'));
    for (const e of w.workload.events as (WorkloadEvent & { svids?: { cert: string }[] })[]) if (e.event === 'data' && e.svids?.[0]) seen.add(e.svids[0].cert);
    return seen.size >= 3 ? true : undefined;
  }, 12_000, 'three SVIDs on one stream');
  t.log(`3 SVIDs in ${Date.now() - started} ms`);
  t.true(seen.size >= 3);
});

test.serial('JWT-SVIDs are minted through the server, cached per audience set, and validated against the agent bundles', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/jwt', parentId: a.agentId, selectors: [UID_SELECTOR] });
  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  const first = await eventually(async () => {
    try {
      return await client.fetchJwtSvid({ audience: ['svc-b', 'svc-a'] });
    } catch (err) {
      if (isSigilError(err, 'ERR_PERMISSION_DENIED') || isSigilError(err, 'ERR_UNAVAILABLE')) return undefined;
      throw err;
    }
  }, 10_000, 'a JWT-SVID');
  t.is(first.id.toString(), 'spiffe://example.org/w/jwt');
  const again = await client.fetchJwtSvid({ audience: ['svc-a', 'svc-b'] });
  t.is(again.marshal(), first.marshal(), 'same audience set: the cached token');
  const other = await client.fetchJwtSvid({ audience: 'svc-c' });
  t.not(other.marshal(), first.marshal());
  t.is(a.agent.cache.stats().jwtSvids, 2);

  const validated = await client.validateJwtSvid(first.marshal(), 'svc-a');
  t.is(validated.id.toString(), 'spiffe://example.org/w/jwt');
  const err = await t.throwsAsync(client.validateJwtSvid(first.marshal(), 'svc-z'));
  t.true(isSigilError(err, 'ERR_INVALID_JWT_SVID') || isSigilError(err, 'ERR_INVALID_ARGUMENT'));
  const unknown = await t.throwsAsync(client.fetchJwtSvid({ audience: 'x', spiffeId: 'spiffe://example.org/w/not-mine' }));
  t.true(isSigilError(unknown, 'ERR_NO_IDENTITY') || isSigilError(unknown, 'ERR_PERMISSION_DENIED'));
});

test.serial('an entry that reaches its expiresAt stops being served at once, on its own timer, and open streams get the new state', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  // The agent's clock is moved by hand: the server (real time) sees nothing expire, so no batch comes.
  const clock = new ManualClock(Date.now());
  const a = await startTestAgent(t, server, { clock });
  const selector = `unix:uid:${process.getuid?.() ?? 0}`;
  const expiring = await server.createEntry({ spiffeId: 'spiffe://example.org/w/expiring', parentId: a.agentId, selectors: [selector], expiresAtMs: clock.nowMs() + 120_000 });
  const staying = await server.createEntry({ spiffeId: 'spiffe://example.org/w/staying', parentId: a.agentId, selectors: [selector] });
  await eventually(() => (a.agent.cache.serialOf(expiring) && a.agent.cache.serialOf(staying) ? true : undefined), 5000, 'both SVIDs');
  const updates: WorkloadUpdate[] = [];
  const unsubscribe = a.agent.cache.subscribe([parseSelector(selector)], (u) => updates.push(u));
  t.teardown(unsubscribe);
  await eventually(() => (updates.at(-1)?.svids.length === 2 ? true : undefined), 5000, 'both identities on the stream');
  const batches = a.agent.sync.batchesApplied;

  clock.advance(119_000);
  t.is(updates.at(-1)?.svids.length, 2, 'still served before expiresAt');
  clock.advance(1_000);
  t.deepEqual(updates.at(-1)?.svids.map((s) => s.spiffeId), ['spiffe://example.org/w/staying']);
  t.is(a.agent.cache.serialOf(expiring), undefined, 'its SVID is dropped');
  t.is(a.agent.cache.stats().entries, 1);
  t.is(a.agent.sync.batchesApplied, batches, 'no batch was needed');
  const jwt = await a.agent.cache.fetchJwtSvids([parseSelector(selector)], ['aud'], 'spiffe://example.org/w/expiring');
  t.deepEqual(jwt, [], 'no JWT-SVID for an expired entry');
  t.true(a.lines.some((l) => l.includes('registration entries expired')));
});

test.serial('matching through the selector index: all of an entry’s selectors are needed, selector changes move an entry between workloads, deletes reach only its workloads', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  const cache = a.agent.cache;
  const sel = (s: string): ReturnType<typeof parseSelector> => parseSelector(s);
  const last = (u: WorkloadUpdate[]): string[] => (u.at(-1)?.svids ?? []).map((s) => s.spiffeId);
  const both = await server.createEntry({ spiffeId: 'spiffe://example.org/w/both', parentId: a.agentId, selectors: ['unix:uid:1001', 'unix:gid:2001'] });
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/uid', parentId: a.agentId, selectors: ['unix:uid:1001'] });
  await eventually(() => (cache.stats().svids === 2 ? true : undefined), 5000, 'two SVIDs');

  const onlyUid: WorkloadUpdate[] = [];
  const uidAndGid: WorkloadUpdate[] = [];
  const other: WorkloadUpdate[] = [];
  t.teardown(cache.subscribe([sel('unix:uid:1001'), sel('unix:gid:9')], (u) => onlyUid.push(u)));
  t.teardown(cache.subscribe([sel('unix:uid:1001'), sel('unix:gid:2001'), sel('unix:user:x')], (u) => uidAndGid.push(u)));
  t.teardown(cache.subscribe([sel('unix:uid:1002')], (u) => other.push(u)));
  await eventually(() => (onlyUid.length > 0 && uidAndGid.length > 0 && other.length > 0 ? true : undefined), 5000, 'first pushes');
  t.deepEqual(last(onlyUid), ['spiffe://example.org/w/uid']);
  t.deepEqual(last(uidAndGid).sort(), ['spiffe://example.org/w/both', 'spiffe://example.org/w/uid']);
  t.deepEqual(last(other), []);

  // The entry's selectors change: it leaves the second workload and reaches the third.
  const otherBefore = other.length;
  const r = await server.admin.call<{ results: { status: { code: number } }[] }>('Entries', 'BatchUpdateEntry', {
    entries: [{ id: both, spiffe_id: 'spiffe://example.org/w/both', parent_id: a.agentId, selectors: [{ type: 'unix', value: 'uid:1002' }] }],
  });
  t.is(r.results[0]?.status.code, 0);
  await eventually(() => (last(other).includes('spiffe://example.org/w/both') ? true : undefined), 5000, 'moved to the third workload');
  await eventually(() => (last(uidAndGid).length === 1 ? true : undefined), 5000, 'gone from the second');
  t.deepEqual(last(uidAndGid), ['spiffe://example.org/w/uid']);
  t.true(other.length > otherBefore);

  // A delete reaches the workloads that had the entry; the first one's state is unchanged and not pushed again.
  const firstPushes = onlyUid.length;
  await server.admin.call('Entries', 'BatchDeleteEntry', { ids: [both] });
  await eventually(() => (last(other).length === 0 ? true : undefined), 5000, 'deleted from the third');
  t.is(onlyUid.length, firstPushes);
  t.deepEqual(last(uidAndGid), ['spiffe://example.org/w/uid']);
  t.deepEqual(await cache.fetchJwtSvids([sel('unix:uid:1002')], ['aud'], undefined), []);
});
