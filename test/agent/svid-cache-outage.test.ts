/**
 * The SVID cache when the server cannot be reached (issue 11, item 4), on a ManualClock with
 * an issuer that always fails: what a bundle stream and an X509-SVID stream are told before
 * the first entry sync, after a sync failure, after the first-sync wait, and when every SVID
 * a workload is entitled to failed to mint. The real-process view of the same is
 * test/e2e/agent-outage.test.ts.
 */
import test from 'ava';
import { ManualClock } from '../../src/common/clock.js';
import { SigilError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { parseSelector } from '../../src/spiffe/selector.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { DEFAULT_FIRST_SYNC_WAIT_MS, SvidCache, type SvidIssuer } from '../../src/agent/svid-cache.js';
import type { WireBundle, WireEntry } from '../../src/agent/server-client.js';
import type { WorkloadUpdate } from '../../src/agent/workload-api/identity-source.js';
import { createCa, createJwtKey } from '../helpers/pki.js';

const TD = TrustDomain.parse('example.org');
const UID = parseSelector('unix:uid:1000');
const OTHER = parseSelector('unix:uid:2000');

async function bundleOf(): Promise<Bundle> {
  const ca = await createCa();
  const jwt = createJwtKey('ES256', 'k1');
  const doc = {
    keys: [
      { ...ca.x509.publicKey.export({ format: 'jwk' }), use: 'x509-svid', x5c: [Buffer.from(ca.der).toString('base64')] },
      { ...jwt.publicKey.export({ format: 'jwk' }), use: 'jwt-svid', kid: 'k1' },
    ],
  };
  return Bundle.parseJwks(TD, doc);
}

function wire(b: Bundle): WireBundle {
  return {
    trust_domain_id: TD.idString,
    document: Buffer.from(b.toJwks()),
    x509_authorities: b.x509AuthoritiesDer().map((d) => Buffer.from(d)),
    sequence: '1',
    refresh_hint_seconds: '0',
  };
}

function entry(id: string): WireEntry {
  return {
    id,
    spiffe_id: `spiffe://example.org/${id}`,
    parent_id: 'spiffe://example.org/agent',
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509_svid_ttl_seconds: 0,
    jwt_svid_ttl_seconds: 0,
    dns_names: [],
    federates_with: [],
    admin: false,
    downstream: false,
    hint: '',
    revision: '1',
    expires_at: '0',
  };
}

/** An issuer whose server is down. */
const down: SvidIssuer = {
  batchNewX509Svid: () => Promise.reject(new SigilError('ERR_UNAVAILABLE', 'connection refused', { reason: 'down' })),
  newJwtSvid: () => Promise.reject(new SigilError('ERR_UNAVAILABLE', 'connection refused', { reason: 'down' })),
};

function cacheWith(storedBundle: Bundle | undefined, clock: ManualClock): SvidCache {
  return new SvidCache({
    trustDomain: TD,
    issuer: down,
    clock,
    logger: silentLogger(),
    retryInitialMs: 60_000,
    retryMaxMs: 60_000,
    ...(storedBundle === undefined ? {} : { storedBundle }),
  });
}

/** Records what one subscription is told. */
function watch(cache: SvidCache, selectors = [UID], bundlesOnly = false): { updates: WorkloadUpdate[]; unavailable: SigilError[]; stop: () => void } {
  const updates: WorkloadUpdate[] = [];
  const unavailable: SigilError[] = [];
  const stop = cache.subscribe(selectors, (u) => updates.push(u), { bundlesOnly, onUnavailable: (e) => unavailable.push(e) });
  return { updates, unavailable, stop };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('before the first sync: the stored bundle answers bundle streams at once; SVID streams wait, then hear UNAVAILABLE after the first-sync wait', async (t) => {
  const clock = new ManualClock(Date.now());
  const stored = await bundleOf();
  const cache = cacheWith(stored, clock);
  t.teardown(() => cache.stop());

  const bundles = watch(cache, [UID], true);
  t.is(bundles.updates.length, 1);
  t.true(Buffer.from(bundles.updates[0]?.bundle.x509AuthoritiesDer ?? []).equals(Buffer.from(stored.x509ToDer())));
  t.true(Buffer.from(bundles.updates[0]?.bundle.jwtKeysJwks ?? []).equals(Buffer.from(stored.jwtToJwksBytes())));
  t.true(bundles.updates[0]?.entitled);
  t.deepEqual(bundles.unavailable, []);

  const x509 = watch(cache);
  t.deepEqual(x509.updates, []);
  t.deepEqual(x509.unavailable, []);
  clock.advance(DEFAULT_FIRST_SYNC_WAIT_MS - 1);
  t.deepEqual(x509.unavailable, [], 'still within the wait');
  clock.advance(1);
  t.is(x509.unavailable.length, 1);
  t.is(x509.unavailable[0]?.code, 'ERR_UNAVAILABLE');
  t.is(x509.unavailable[0]?.reason, 'not-synced');
  t.deepEqual(x509.updates, []);

  // From then on a new SVID request is answered at once.
  const late = watch(cache);
  t.is(late.unavailable[0]?.reason, 'not-synced');
  t.is(bundles.updates.length, 1, 'the bundle stream is not disturbed');
  t.false(cache.stats().synced);
});

test('a sync failure answers waiting SVID streams at once; without a stored bundle, bundle streams hear UNAVAILABLE too', async (t) => {
  const clock = new ManualClock(Date.now());
  const cache = cacheWith(undefined, clock);
  t.teardown(() => cache.stop());
  const bundles = watch(cache, [UID], true);
  const x509 = watch(cache);
  t.deepEqual([bundles.updates, bundles.unavailable, x509.updates, x509.unavailable], [[], [], [], []]);
  cache.syncFailed(new SigilError('ERR_UNAVAILABLE', 'connection refused'));
  t.is(x509.unavailable[0]?.reason, 'not-synced');
  t.is(bundles.unavailable[0]?.reason, 'not-synced');
});

test('synced but every SVID of the workload failed to mint: UNAVAILABLE, not an empty update (which would be a denial); bundles still flow', async (t) => {
  const clock = new ManualClock(Date.now());
  const b = await bundleOf();
  const cache = cacheWith(b, clock);
  t.teardown(() => cache.stop());
  const x509 = watch(cache);
  const bundles = watch(cache, [UID], true);
  const strangerX509 = watch(cache, [OTHER]);
  const strangerBundles = watch(cache, [OTHER], true);
  cache.applyBatch({ kind: 'FULL', entries: [entry('e1')], deletedEntryIds: [], bundles: { own: wire(b), federated: [] } });
  await turn();
  await turn();
  t.is(x509.unavailable.at(-1)?.reason, 'svid-mint-failed');
  t.false(x509.updates.some((u) => u.svids.length === 0), 'never told it has no identity');
  t.true(bundles.updates.at(-1)?.entitled);
  // A workload no entry matches is denied as before: an empty update, not entitled.
  t.is(strangerX509.updates.at(-1)?.svids.length, 0);
  t.deepEqual(strangerX509.unavailable, []);
  t.false(strangerBundles.updates.at(-1)?.entitled);
});
