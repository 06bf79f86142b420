/**
 * The agent end to end in process: a real server (SQLite, TLS agent API), a real agent
 * (join token from a 0600 file, bootstrap bundle file), the real Workload API socket, real
 * workload processes (one as `nobody` through setpriv) and `openssl verify` on what is served.
 */
import test from 'ava';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { ManualClock } from '../../src/common/clock.js';
import { isSigilError } from '../../src/common/errors.js';
import type { X509Context } from '../../src/client/x509-context.js';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestServer } from '../helpers/server.js';
import { startWorkload, writeWorkloadScript, type WorkloadEvent } from './workload-api/support/workload-child.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test.serial : test.serial.skip;
/** The uid this test runs as: the workloads it starts run as it too, so no root is needed. */
const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;
const GRPC = { INVALID_ARGUMENT: 3, PERMISSION_DENIED: 7 } as const;

let script: string;
test.before(() => {
  script = writeWorkloadScript();
});

/** Fetches the X.509 context, retrying while the caller has no identity yet. */
async function fetchWhenReady(client: WorkloadApiClient, timeoutMs = 10_000): Promise<X509Context> {
  return eventually(async () => {
    try {
      return await client.fetchX509Context(AbortSignal.timeout(2000));
    } catch (err) {
      if (isSigilError(err, 'ERR_PERMISSION_DENIED') || isSigilError(err, 'ERR_UNAVAILABLE') || isSigilError(err, 'ERR_CANCELLED')) return undefined;
      throw err;
    }
  }, timeoutMs, 'an X509-SVID');
}

rootOnly('serves the entry SVID to the matching uid, PermissionDenied to another uid, InvalidArgument without the header', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/root', parentId: a.agentId, selectors: ['unix:uid:0'] });

  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  const ctx = await fetchWhenReady(client);
  const svid = ctx.svids[0];
  t.is(svid?.id.toString(), 'spiffe://example.org/w/root');
  const bundle = ctx.bundles.get('example.org');
  t.truthy(bundle);
  const verified = await opensslVerify({ roots: [bundle?.x509ToPem() ?? ''], leaf: svid?.certificatesPem() ?? '' , flags: ['-purpose', 'sslclient'] });
  t.true(verified.ok, verified.output);

  const nobody = await startWorkload(script, a.socketPath, { uid: 65534, gid: 65534 });
  t.teardown(() => nobody.workload.stop());
  nobody.workload.send({ op: 'x509', tag: 'n' });
  const denied = await nobody.workload.tagged('n');
  t.is(denied.event, 'error');
  t.is(denied.code, GRPC.PERMISSION_DENIED);

  const root = await startWorkload(script, a.socketPath);
  t.teardown(() => root.workload.stop());
  root.workload.send({ op: 'x509', tag: 'h', header: false });
  const noHeader = await root.workload.tagged('h');
  t.is(noHeader.event, 'error');
  t.is(noHeader.code, GRPC.INVALID_ARGUMENT);
  root.workload.send({ op: 'x509', tag: 'ok' });
  const ok = (await root.workload.tagged('ok')) as WorkloadEvent & { svids: { spiffeId: string; keyBytes: number }[] };
  t.is(ok.event, 'data');
  t.is(ok.svids[0]?.spiffeId, 'spiffe://example.org/w/root');
  t.true((ok.svids[0]?.keyBytes ?? 0) > 0);
});

test.serial('a new entry becomes a served SVID quickly, and reaches a waiting workload', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await eventually(() => a.agent.cache.stats().synced || undefined, 10_000, 'first sync');

  const client = new WorkloadApiClient({ address: a.agent.address, backoff: { initialMs: 50, maxMs: 200 } });
  t.teardown(() => client.close());
  const watch = new AbortController();
  t.teardown(() => watch.abort());
  const received = new Promise<{ at: number; ctx: X509Context }>((resolve) => {
    void client.watchX509Context({ onUpdate: (ctx) => resolve({ at: Date.now(), ctx }) }, watch.signal);
  });

  const created = Date.now();
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/late', parentId: a.agentId, selectors: [UID_SELECTOR] });
  const cachedAt = await eventually(() => (a.agent.cache.serialOf(entryId) === undefined ? undefined : Date.now()), 5000, 'the new SVID in the cache');
  t.log(`entry create → SVID cached on the agent: ${cachedAt - created} ms`);
  // A generous bound (the target is 1 s) so a loaded CI machine passes; the real figure is benchmark 6.
  t.true(cachedAt - created < 3000, `took ${cachedAt - created} ms`);
  const got = await received;
  t.log(`entry create → workload update: ${got.at - created} ms`);
  t.is(got.ctx.svids[0]?.id.toString(), 'spiffe://example.org/w/late');
  t.true(got.at - created < 5000);
});

test.serial('the successor is minted at half-life and pushed on an open stream; the agent SVID is renewed too', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const clock = new ManualClock(Date.now());
  const a = await startTestAgent(t, server, { clock, random: () => 0.5 });
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/w/rotating', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => a.agent.cache.serialOf(entryId), 5000, 'first SVID');
  const firstAgentSerial = a.agent.identity.current?.serial;

  const root = await startWorkload(script, a.socketPath);
  t.teardown(() => root.workload.stop());
  root.workload.send({ op: 'x509', tag: 's' });
  const first = (await root.workload.tagged('s', 0)) as WorkloadEvent & { svids: { cert: string }[] };
  t.is(first.event, 'data');

  // Half of the SVID's remaining life (jitter pinned to 0 by random 0.5).
  const notAfter = a.agent.cache.svidOf(entryId)?.notAfterMs ?? 0;
  const half = clock.nowMs() + (notAfter - clock.nowMs()) / 2;
  clock.set(half - 60_000); // before half-life: nothing happens
  await new Promise((r) => setTimeout(r, 200));
  t.is(root.workload.events.filter((e) => e.tag === 's').length, 1);

  clock.set(half + 60_000);
  const second = (await root.workload.tagged('s', 1, 5000)) as WorkloadEvent & { svids: { cert: string }[] };
  t.is(second.event, 'data');
  t.not(second.svids[0]?.cert, first.svids[0]?.cert);
  await eventually(() => (a.agent.identity.current?.serial !== firstAgentSerial ? true : undefined), 5000, 'agent SVID renewal');

  // After renewal the sync stream runs on the new agent SVID: a new entry still arrives.
  const later = await server.createEntry({ spiffeId: 'spiffe://example.org/w/after-renewal', parentId: a.agentId, selectors: [UID_SELECTOR] });
  const laterSerial = await eventually(() => a.agent.cache.serialOf(later), 5000, 'entry after renewal');
  t.truthy(laterSerial);
  t.not(a.agent.identity.current?.serial, firstAgentSerial, 'the agent SVID was renewed');
});

test.serial('a prepared CA key changes the bundle: open streams get it pushed', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/bundles', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => (a.agent.cache.stats().svids > 0 ? true : undefined), 5000, 'first SVID');
  const root = await startWorkload(script, a.socketPath);
  t.teardown(() => root.workload.stop());
  root.workload.send({ op: 'x509bundles', tag: 'b' });
  root.workload.send({ op: 'jwtbundles', tag: 'j' });
  const first = (await root.workload.tagged('b', 0)) as WorkloadEvent & { bundles: Record<string, string> };
  const firstJwt = (await root.workload.tagged('j', 0)) as WorkloadEvent & { bundles: Record<string, { keys: unknown[] }> };
  t.truthy(first.bundles['spiffe://example.org']);

  await server.admin.call('LocalAuthority', 'Prepare', { kind: 'x509' });
  const second = (await root.workload.tagged('b', 1, 10_000)) as WorkloadEvent & { bundles: Record<string, string> };
  t.not(second.bundles['spiffe://example.org'], first.bundles['spiffe://example.org']);
  await server.admin.call('LocalAuthority', 'Prepare', { kind: 'jwt' });
  const secondJwt = (await root.workload.tagged('j', 1, 10_000)) as WorkloadEvent & { bundles: Record<string, { keys: unknown[] }> };
  t.is(secondJwt.bundles['spiffe://example.org']?.keys.length, (firstJwt.bundles['spiffe://example.org']?.keys.length ?? 0) + 1);
});

test.serial('a burst of 1,000 workload connections is served from the real cache with no UNAVAILABLE', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/burst', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await eventually(() => (a.agent.cache.stats().svids > 0 ? true : undefined), 5000, 'first SVID');
  const root = await startWorkload(script, a.socketPath);
  t.teardown(() => root.workload.stop());
  root.workload.send({ op: 'burst', tag: 'burst', n: 1000 });
  const result = (await root.workload.tagged('burst', 0, 90_000)) as WorkloadEvent & { counts: Record<string, number> };
  t.deepEqual(result.counts, { ok: 1000 });
  await eventually(() => (a.agent.cache.stats().subscribers === 0 ? true : undefined), 10_000, 'subscriptions released');
});
