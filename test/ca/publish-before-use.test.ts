/**
 * Several servers, one trust domain: a CaManager whose journal store knows other servers'
 * journals. Its first authorities wait the propagation margin in the bundle before they sign
 * (when another server's are live), operator activation honours the margin, and keys named
 * in another server's journal are never collected as orphans.
 */
import test from 'ava';
import { ManualClock } from '../../src/common/clock.js';
import { isSigilError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { CaManager } from '../../src/ca/ca-manager.js';
import type { CaJournalStore } from '../../src/ca/ca-journal.js';
import { MemoryKeyManager } from '../../src/ca/key-manager/memory-key-manager.js';
import { T0, TD, makeCsr, sqliteJournal } from './helpers.js';

const S = 1000;

/** A journal store whose `others` are the journals of other stores (each in its own SQLite file). */
function sharedStore(own: CaJournalStore, others: CaJournalStore[]): CaJournalStore {
  return {
    load: () => own.load(),
    save: (d) => own.save(d),
    others: async () => (await Promise.all(others.map((o) => o.load()))).filter((j): j is Uint8Array => j !== undefined),
  };
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('the first server activates at once; a second one waits the margin with its authorities published first', async (t) => {
  const clock = new ManualClock(T0);
  const jA = await sqliteJournal();
  const jB = await sqliteJournal();
  const publishedA: number[] = [];
  const a = await CaManager.create({
    trustDomain: TD, keyManager: new MemoryKeyManager(), journal: sharedStore(jA, [jB]), clock, logger: silentLogger(),
    propagationMarginMs: 60 * S, publish: async () => void publishedA.push(clock.nowMs()),
  });
  t.teardown(() => a.close());
  t.is(a.status().x509[0]?.phase, 'active', 'nobody else holds an authority: no wait');
  t.true(publishedA.length >= 1, 'published before the first signature');

  const events: string[] = [];
  let done = false;
  const creating = CaManager.create({
    trustDomain: TD, keyManager: new MemoryKeyManager(), journal: sharedStore(jB, [jA]), clock, logger: silentLogger(),
    propagationMarginMs: 60 * S,
    publish: async () => {
      // at publication the journal already holds the prepared authorities: the bundle merge sees them
      const j = JSON.parse(Buffer.from((await jB.load()) as Uint8Array).toString()) as { x509: { phase: string }[]; jwt: { phase: string }[] };
      events.push(`publish:${j.x509.map((r) => r.phase).join(',')}/${j.jwt.map((r) => r.phase).join(',')}`);
    },
  }).then((ca) => {
    done = true;
    return ca;
  });
  await flush();
  t.false(done, 'the joining server does not sign before the margin');
  t.true(events.length >= 1 && events.every((e) => /^publish:prepared\/(prepared)?$/.test(e)), events.join(' '));
  t.is(events[events.length - 1], 'publish:prepared/prepared');
  clock.advance(59 * S);
  await flush();
  t.false(done);
  clock.advance(1 * S);
  const b = await creating;
  t.teardown(() => b.close());
  t.is(b.status().x509[0]?.phase, 'active');
  t.is(b.status().jwt[0]?.phase, 'active');
  const { publicKey } = await makeCsr();
  await t.notThrowsAsync(b.signX509Svid({ publicKey, spiffeId: TD.id('w') }));
  t.not(b.status().x509[0]?.id, a.status().x509[0]?.id, 'each server has its own CA');
});

test('operator activation waits the propagation margin after prepare', async (t) => {
  const clock = new ManualClock(T0);
  const ca = await CaManager.create({ trustDomain: TD, keyManager: new MemoryKeyManager(), journal: await sqliteJournal(), clock, logger: silentLogger(), propagationMarginMs: 30 * S });
  t.teardown(() => ca.close());
  await ca.prepare('x509');
  const err = await t.throwsAsync(ca.activate('x509'));
  t.true(isSigilError(err) && err.code === 'ERR_FAILED_PRECONDITION' && err.reason === 'authority-propagating', String(err));
  clock.advance(30 * S);
  const active = await ca.activate('x509');
  t.is(active.phase, 'active');
});

test('the scheduled activation at 5/6 also waits for the margin after publication', async (t) => {
  const clock = new ManualClock(T0);
  const H = 3_600_000;
  const ca = await CaManager.create({ trustDomain: TD, keyManager: new MemoryKeyManager(), journal: await sqliteJournal(), clock, logger: silentLogger(), caTtlMs: 6 * H, propagationMarginMs: 1.5 * H });
  t.teardown(() => ca.close());
  const first = ca.status().x509[0]?.id;
  // the timer did not run at 3h (1/2): prepared late, at 4h, so the margin runs to 5h30, past 5/6 (5h)
  clock.set(T0 + 4 * H);
  await ca.tick(); // prepares at 1/2 (3h) -> published now (4h)
  const prepared = ca.status().x509.find((s) => s.phase === 'prepared');
  t.truthy(prepared);
  clock.set(T0 + 5 * H + 1);
  await ca.tick();
  t.is(ca.status().x509.find((s) => s.phase === 'active')?.id, first, 'not yet: published at 4h, margin 1h30');
  clock.set(T0 + 5.5 * H);
  await ca.tick();
  t.is(ca.status().x509.find((s) => s.phase === 'active')?.id, prepared?.id);
});

test('keys named in another server\'s journal are not collected as orphans (a shared key folder)', async (t) => {
  const clock = new ManualClock(T0);
  const km = new MemoryKeyManager();
  const jA = await sqliteJournal();
  const jB = await sqliteJournal();
  const a = await CaManager.create({ trustDomain: TD, keyManager: km, journal: sharedStore(jA, [jB]), clock, logger: silentLogger() });
  await a.close();
  const before = (await km.listKeys()).map((k) => k.id).sort();
  t.is(before.length, 2);
  const b = await CaManager.create({ trustDomain: TD, keyManager: km, journal: sharedStore(jB, [jA]), clock, logger: silentLogger() });
  t.teardown(() => b.close());
  const after = (await km.listKeys()).map((k) => k.id);
  for (const id of before) t.true(after.includes(id), id);
  t.is(after.length, 4);
});
