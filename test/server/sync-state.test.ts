import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { RegistrationEntry } from '../../src/datastore/datastore.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { makeSelector } from '../../src/spiffe/selector.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { authorizedSet, EntryAuthorizer, serverSpiffeId } from '../../src/server/authorized-entries.js';
import { ChangeHub, type EntryChange } from '../../src/server/change-hub.js';
import { AgentSyncState } from '../../src/server/agent-api/sync-state.js';

const td = TrustDomain.parse('example.org');
const SERVER = serverSpiffeId(td).toString();
const AGENT = 'spiffe://example.org/sigil/agent/test/a';

/** Small deterministic PRNG (mulberry32) so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

for (const seed of [1, 2, 3, 4]) {
  test(`incremental sync state equals a full recompute after every batch of random changes (seed ${seed})`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sigil-sync-'));
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const ds = await openSqliteDatastore({ path: join(dir, 'db.sqlite3'), clock });
    const hub = new ChangeHub();
    t.teardown(async () => {
      hub.stop();
      await ds.close();
      await rm(dir, { recursive: true, force: true });
    });
    await hub.startPolling(ds, silentLogger(), 3_600_000);
    const changes: EntryChange[] = [];
    hub.subscribe((c) => {
      if (c.kind === 'entries') changes.push(...c.changes);
    });
    const agent = { agentId: AGENT, nodeSelectors: [makeSelector('node', 'a'), makeSelector('node', 'b')] };
    const state = new AgentSyncState({ ds, trustDomain: td, clock, agent });
    await state.recompute();
    const view = new Map<string, number>(); // what the agent holds: id → revision
    const applyDelta = (): void => {
      const d = state.takeDelta();
      for (const e of d.upserts) view.set(e.id, e.revision);
      for (const id of d.deleted) view.delete(id);
    };
    applyDelta();

    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const ids = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'].map((n) => `spiffe://example.org/${n}`);
    const parents = [...ids, AGENT, AGENT, SERVER, 'spiffe://example.org/elsewhere'];
    const live: RegistrationEntry[] = [];
    let serial = 0;
    let recomputes = 0;
    for (let step = 0; step < 120; step++) {
      const ops = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < ops; k++) {
        const r = rnd();
        if (r < 0.5 || live.length === 0) {
          const parentId = pick(parents);
          const selectors = parentId === SERVER ? [makeSelector('node', pick(['a', 'b', 'c']))] : [makeSelector('unix', `uid:${++serial}`)];
          const { entry, created } = await ds.createEntryIfNotExists({
            spiffeId: pick(ids), parentId, selectors, x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [],
            admin: false, downstream: false, hint: '', entryExpiresAt: rnd() < 0.15 ? clock.nowMs() + Math.floor(rnd() * 120_000) + 1000 : 0,
          });
          // node aliases have few selector sets to choose from; a duplicate is skipped
          if (created) live.push(entry);
        } else if (r < 0.75) {
          const i = Math.floor(rnd() * live.length);
          const [gone] = live.splice(i, 1);
          await ds.deleteEntry((gone as RegistrationEntry).id);
        } else {
          const i = Math.floor(rnd() * live.length);
          const old = live[i] as RegistrationEntry;
          const parentId = old.parentId === SERVER ? SERVER : pick(parents.filter((p) => p !== SERVER));
          const updated = await ds.updateEntry({ ...old, parentId, spiffeId: rnd() < 0.5 ? old.spiffeId : pick(ids) });
          live[i] = updated;
        }
      }
      let stranded = false;
      if (rnd() < 0.2) {
        clock.advance(Math.floor(rnd() * 60_000));
        stranded = state.expire();
      }
      await hub.pollNow();
      stranded = state.apply(changes.splice(0)) || stranded;
      if (stranded) {
        recomputes++;
        await state.recompute();
      } else {
        await state.expand();
      }
      applyDelta();
      const truth = (await authorizedSet(ds, td, agent, clock.nowMs())).entries;
      t.deepEqual(
        new Map([...view].sort()),
        new Map([...truth.values()].map((e) => [e.id, e.revision] as [string, number]).sort()),
        `step ${step}`,
      );
      // one-entry authorisation by the parent chain agrees with the set
      const authorizer = new EntryAuthorizer(ds, td, agent, clock.nowMs());
      for (const e of live) t.is((await authorizer.entry(e.id)) !== undefined, truth.has(e.id), `step ${step} entry ${e.spiffeId} under ${e.parentId}`);
    }
    t.log(`recomputes: ${recomputes} of 120 steps`);
  });
}
