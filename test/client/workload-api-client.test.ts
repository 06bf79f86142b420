import test from 'ava';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import { ManualClock } from '../../src/common/clock.js';
import type { SigilError } from '../../src/common/errors.js';
import { serviceClient, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';
import { startStack, type Stack } from '../e2e/support/stack.js';
import { TestTrustDomain } from '../helpers/workload-source.js';
import { agentHolds, ownBundle, rotateEntry, setFederatedBundle } from './support/real-agent.js';

// The client against the real agent (real server, agent in process, entries for this uid).
// Only the foreign trust domain is made here: its bundle is set on the server for federation.
let foreign: TestTrustDomain;
test.before(async () => {
  foreign = await TestTrustDomain.create('partner.test');
});

async function withAgent(fn: (stack: Stack) => Promise<void>): Promise<void> {
  const stack = await startStack();
  try {
    await fn(stack);
  } finally {
    await stack.close();
  }
}

function until<T>(pred: () => T | undefined, timeoutMs = 5000, what = 'condition'): Promise<T> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = (): void => {
      const v = pred();
      if (v !== undefined) resolve(v);
      else if (Date.now() - start > timeoutMs) reject(new Error(`${what} not met in time`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

test('fetches the X.509 context, bundles and JWT material with the security header', async (t) => {
  await withAgent(async (stack) => {
    await setFederatedBundle(stack, foreign);
    await stack.entry({ spiffeId: 'spiffe://example.org/web', federatesWith: ['partner.test'] });
    await stack.entry({ spiffeId: 'spiffe://example.org/admin', hint: 'admin', federatesWith: ['partner.test'] });
    await agentHolds(stack, 2);
    const own = await ownBundle(stack);
    const client = new WorkloadApiClient({ address: stack.address });
    try {
      const ctx = await client.fetchX509Context();
      // The agent orders identities by SPIFFE ID, so svids[0] (the default) is /admin.
      t.deepEqual(ctx.svids.map((s) => s.id.toString()), ['spiffe://example.org/admin', 'spiffe://example.org/web']);
      t.deepEqual(ctx.svids.map((s) => s.hint), ['admin', '']);
      t.deepEqual(ctx.bundles.list().map((b) => b.trustDomain.name), ['example.org', 'partner.test']);
      t.is((await client.fetchX509Svid()).id.toString(), 'spiffe://example.org/admin');

      const x509Bundles = await client.fetchX509Bundles();
      t.deepEqual(x509Bundles.list().map((b) => b.x509Authorities.length), [1, 1]);
      const jwtBundles = await client.fetchJwtBundles();
      t.deepEqual([...jwtBundles.get('example.org')!.jwtAuthorities.keys()], [...own.jwtAuthorities.keys()]);
      t.is(own.jwtAuthorities.size, 1);

      const svid = await client.fetchJwtSvid({ audience: 'spiffe://example.org/db' });
      t.is(svid.id.toString(), 'spiffe://example.org/admin');
      t.is(svid.hint, 'admin');
      t.deepEqual(svid.audience, ['spiffe://example.org/db']);
      const one = await client.fetchJwtSvid({ audience: ['a', 'b'], spiffeId: 'spiffe://example.org/web' });
      t.is(one.id.toString(), 'spiffe://example.org/web');
      t.is(one.hint, '');
      t.deepEqual(one.audience, ['a', 'b']);
      t.is((await client.fetchJwtSvids({ audience: 'x' })).length, 2);

      const validated = await client.validateJwtSvid(svid.marshal(), 'spiffe://example.org/db');
      t.is(validated.id.toString(), 'spiffe://example.org/admin');
      const bad = await t.throwsAsync(client.validateJwtSvid(svid.marshal(), 'someone-else'));
      t.is((bad as SigilError).code, 'ERR_INVALID_JWT_SVID');
      const noAud = await t.throwsAsync(client.fetchJwtSvid({ audience: [] }));
      t.is((noAud as SigilError).reason, 'no-audience');
    } finally {
      client.close();
    }
  });
});

test('the agent refuses calls without the header, which is why the client always sends it', async (t) => {
  await withAgent(async (stack) => {
    await stack.entry({ spiffeId: 'spiffe://example.org/web' });
    await agentHolds(stack, 1);
    const Ctor = serviceClient(WORKLOAD_PROTO, WORKLOAD_SERVICE);
    const raw = new Ctor(stack.address, credentials.createInsecure());
    try {
      const code = await new Promise<number | undefined>((resolve) => {
        const s = (raw as unknown as Record<string, (req: object, md: Metadata) => NodeJS.EventEmitter>).FetchX509SVID!({}, new Metadata());
        s.on('error', (e: { code?: number }) => resolve(e.code));
        s.on('data', () => resolve(undefined));
      });
      t.is(code, status.INVALID_ARGUMENT);
    } finally {
      raw.close();
    }
  });
});

test('a watch retries PermissionDenied with backoff, resets after a message, and sees rotations', async (t) => {
  await withAgent(async (stack) => {
    // Real time to start from: the client checks SVID validity against this clock.
    const clock = new ManualClock(Date.now());
    const client = new WorkloadApiClient({ address: stack.address, clock, backoff: { initialMs: 1000, maxMs: 8000, random: () => 1 } });
    const updates: X509Context[] = [];
    const errors: SigilError[] = [];
    const ctl = new AbortController();
    const done = client.watchX509Context({ onUpdate: (c) => updates.push(c), onError: (e) => errors.push(e) }, ctl.signal);
    try {
      // No entitlement yet: PermissionDenied, then a 1s backoff timer.
      await until(() => (errors.length >= 1 && clock.pendingTimers === 1 ? true : undefined), 5000, 'line 108');
      t.is(errors[0]!.code, 'ERR_NO_IDENTITY'); // PermissionDenied on the wire
      clock.advance(999);
      t.is(errors.length, 1);
      clock.advance(1);
      await until(() => (errors.length >= 2 && clock.pendingTimers === 1 ? true : undefined), 5000, 'line 113');
      // Second failure waits 2s (exponential), not 1s.
      clock.advance(1999);
      t.is(errors.length, 2);
      const web = await stack.entry({ spiffeId: 'spiffe://example.org/web' });
      // The agent syncs and mints in real time; only then may the retry (on the manual clock) go.
      await agentHolds(stack, 1);
      clock.advance(1);
      await until(() => (updates.length >= 1 ? true : undefined), 5000, 'line 119');
      t.is(updates[0]!.svids[0]!.id.toString(), 'spiffe://example.org/web');

      // Rotation pushed on the open stream: the entry changes, the agent mints anew.
      await rotateEntry(stack, web);
      await until(() => (updates.length >= 2 ? true : undefined), 20_000, 'line 125');
      t.not(updates[1]!.svids[0]!.serial, updates[0]!.svids[0]!.serial);

      // The agent goes away: the stream fails UNAVAILABLE and the backoff starts over at 1s.
      const before = errors.length;
      await stack.agent!.stop();
      await until(() => (errors.length > before && clock.pendingTimers === 1 ? true : undefined), 5000, 'line 131');
      // grpc-js reports a server shutting down as UNAVAILABLE or CANCELLED; both are retried.
      t.true(['ERR_UNAVAILABLE', 'ERR_CANCELLED'].includes(errors.at(-1)!.code));
      clock.advance(999);
      t.is(errors.length, before + 1);
      clock.advance(1);
      await until(() => (errors.length > before + 1 ? true : undefined), 5000, 'line 136');
    } finally {
      ctl.abort();
    }
    await done; // ends cleanly on abort
    t.is(clock.pendingTimers, 0);
    client.close();
  });
});

test('a watch resolves when the client closes; calls after close or abort fail with codes', async (t) => {
  await withAgent(async (stack) => {
    await stack.entry({ spiffeId: 'spiffe://example.org/web' });
    await agentHolds(stack, 1);
    const client = new WorkloadApiClient({ address: stack.address });
    let updates = 0;
    const done = client.watchJwtBundles({ onUpdate: () => updates++ }, new AbortController().signal);
    await until(() => (updates > 0 ? true : undefined));
    client.close();
    await done;
    const closed = await t.throwsAsync(client.fetchX509Context());
    t.is((closed as SigilError).reason, 'client-closed');
    const aborted = new AbortController();
    aborted.abort();
    const c2 = new WorkloadApiClient({ address: stack.address });
    t.is(((await t.throwsAsync(c2.fetchX509Context(aborted.signal))) as SigilError).code, 'ERR_CANCELLED');
    c2.close();
  });
});
