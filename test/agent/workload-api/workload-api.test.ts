/**
 * The Workload API end to end: a real Unix socket in a mkdtemp folder, real workload
 * processes (Node children, some run as `nobody` through setpriv) speaking gRPC to it, the
 * real unix attestor over the real /proc, and a small in-test identity source.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../../src/common/clock.js';
import { isSigilError } from '../../../src/common/errors.js';
import { memoryLogger } from '../../../src/common/logger.js';
import type { WorkloadAttestor } from '../../../src/plugin/workload-attestor.js';
import { ProcfsProcessInfo } from '../../../src/agent/peer/process-info.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../../../src/agent/workload-api/workload-api-server.js';
import { UnixWorkloadAttestor } from '../../../attestors/workload/unix/unix-attestor.js';
import { createTrustDomain, issueSvid, selectors, TestIdentitySource, type TestTrustDomain } from './support/test-identity-source.js';
import { startWorkload, writeWorkloadScript, type Workload, type WorkloadEvent, type WorkloadOptions } from './support/workload-child.js';

const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
const GRPC = { INVALID_ARGUMENT: 3, RESOURCE_EXHAUSTED: 8, PERMISSION_DENIED: 7, UNAVAILABLE: 14 } as const;

let script: string;
let td: TestTrustDomain;
let federatedTd: TestTrustDomain;

test.before(async () => {
  script = writeWorkloadScript();
  td = await createTrustDomain('example.org');
  federatedTd = await createTrustDomain('partner.test');
});

interface Harness {
  readonly server: WorkloadApiServer;
  readonly socketPath: string;
  readonly base: string;
  readonly source: TestIdentitySource;
  readonly lines: string[];
  spawn(options?: WorkloadOptions): Promise<{ workload: Workload; ready: WorkloadEvent }>;
}

async function setup(t: ExecutionContext, options: { attestors?: (processes: ProcfsProcessInfo) => WorkloadAttestor[] } = {}): Promise<Harness> {
  const base = mkdtempSync(join(tmpdir(), 'sigil-wapi-'));
  chmodSync(base, 0o755); // nobody must reach the socket
  const socketPath = join(base, 'run', 'agent.sock');
  const source = new TestIdentitySource(td);
  const { logger, lines } = memoryLogger('debug');
  const processes = new ProcfsProcessInfo();
  const attestors = options.attestors?.(processes) ?? [new UnixWorkloadAttestor({ processes })];
  const server = await startWorkloadApiServer({ socketPath, attestors, identities: source, logger, clock: new ManualClock(), processInfo: processes });
  const workloads: Workload[] = [];
  t.teardown(async () => {
    await Promise.all(workloads.map((w) => w.stop()));
    await server.close();
    // Whatever happened, no key or token may reach a log line.
    for (const line of lines) {
      if (line.includes('PRIVATE KEY') || line.includes('eyJ')) t.fail(`secret in log line: ${line.slice(0, 200)}`);
    }
    rmSync(base, { recursive: true, force: true });
  });
  return {
    server,
    socketPath,
    base,
    source,
    lines,
    async spawn(o) {
      const r = await startWorkload(script, socketPath, o);
      workloads.push(r.workload);
      return r;
    },
  };
}

const rootOnly = AS_ROOT ? test.serial : test.serial.skip;

test.serial('the socket: folder created 0755, socket file 0777, address is unix:///path', async (t) => {
  const h = await setup(t);
  t.is(h.server.address, `unix://${h.socketPath}`);
  t.is(statSync(join(h.base, 'run')).mode & 0o777, 0o755);
  const st = statSync(h.socketPath);
  t.true(st.isSocket());
  t.is(st.mode & 0o777, 0o777);
});

test.serial('a stale socket file is replaced; a live socket or a non-socket path is refused', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'sigil-wapi-path-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const opts = { attestors: [], identities: new TestIdentitySource(td), logger: memoryLogger().logger, clock: new ManualClock() };

  // Stale: the socket file of a listener that was killed (nothing cleaned it up).
  const stale = join(base, 'stale.sock');
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  t.true(statSync(stale).isSocket());
  const s1 = await startWorkloadApiServer({ ...opts, socketPath: stale });
  await s1.close();

  // Live: another process (here, a listener of ours) still accepts on it.
  const liveServer = createServer();
  const live = join(base, 'live.sock');
  await new Promise<void>((res) => liveServer.listen(live, res));
  const inUse = await t.throwsAsync(startWorkloadApiServer({ ...opts, socketPath: live }));
  t.true(isSigilError(inUse, 'ERR_FAILED_PRECONDITION'));
  t.is((inUse as { reason?: string }).reason, 'socket-in-use');
  await new Promise<void>((res) => liveServer.close(() => res()));

  // Not a socket: refused, and left alone.
  const file = join(base, 'file.sock');
  writeFileSync(file, 'precious');
  const notSocket = await t.throwsAsync(startWorkloadApiServer({ ...opts, socketPath: file }));
  t.is((notSocket as { reason?: string }).reason, 'not-a-socket');
  t.true(statSync(file).isFile());
  mkdirSync(join(base, 'dir.sock'));
  const dir = await t.throwsAsync(startWorkloadApiServer({ ...opts, socketPath: join(base, 'dir.sock') }));
  t.is((dir as { reason?: string }).reason, 'not-a-socket');
});

test.serial('a workload whose uid matches an entry gets its X.509-SVID and bundle at once', async (t) => {
  const h = await setup(t);
  const svid = await issueSvid(td, 'spiffe://example.org/me', 'internal');
  h.source.entries = [{ selectors: selectors(`unix:uid:${process.getuid?.() ?? 0}`), svid }];
  const { workload, ready } = await h.spawn();
  workload.send({ op: 'x509', tag: 'a' });
  const first = await workload.tagged('a');
  t.is(first.event, 'data');
  const svids = first.svids as Array<{ spiffeId: string; hint: string; keyBytes: number }>;
  t.deepEqual(
    svids.map((s) => [s.spiffeId, s.hint]),
    [['spiffe://example.org/me', 'internal']],
  );
  t.true((svids[0]?.keyBytes ?? 0) > 0);
  t.deepEqual(first.federated, {});
  // The selectors the source saw came from the kernel's view of that very process.
  const sel = h.source.subscribeCalls[0]?.map((s) => `${s.type}:${s.value}`) ?? [];
  t.true(sel.includes(`unix:uid:${String(ready.uid)}`));
  t.true(h.lines.some((l) => l.includes('"x509 svids sent"') && l.includes(`"peerPid":${String(ready.pid)}`) && l.includes('spiffe://example.org/me')));
});

rootOnly('a workload running as another uid gets PermissionDenied "no identity issued"', async (t) => {
  const h = await setup(t);
  h.source.entries = [{ selectors: selectors('unix:uid:0'), svid: await issueSvid(td, 'spiffe://example.org/root-only') }];
  const { workload, ready } = await h.spawn({ uid: NOBODY, gid: NOBODY });
  t.is(ready.uid, NOBODY);
  workload.send({ op: 'x509', tag: 'a' });
  const e = await workload.tagged('a');
  t.is(e.event, 'error');
  t.is(e.code, GRPC.PERMISSION_DENIED);
  t.is(e.details, 'no identity issued');
  t.is(e.sigilCode, 'ERR_NO_IDENTITY');
  // The other calls agree.
  workload.send({ op: 'jwt', tag: 'j', audience: ['aud'] });
  t.is((await workload.tagged('j')).code, GRPC.PERMISSION_DENIED);
  workload.send({ op: 'x509bundles', tag: 'b' });
  t.is((await workload.tagged('b')).code, GRPC.PERMISSION_DENIED);
  workload.send({ op: 'jwtbundles', tag: 'jb' });
  t.is((await workload.tagged('jb')).code, GRPC.PERMISSION_DENIED);
});

test.serial('every call without the security header fails with InvalidArgument', async (t) => {
  const h = await setup(t);
  h.source.entries = [{ selectors: selectors(`unix:uid:${process.getuid?.() ?? 0}`), svid: await issueSvid(td, 'spiffe://example.org/me') }];
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 'x', header: false });
  workload.send({ op: 'x509', tag: 'wrong', header: 'yes' });
  workload.send({ op: 'x509bundles', tag: 'b', header: false });
  workload.send({ op: 'jwtbundles', tag: 'jb', header: false });
  workload.send({ op: 'jwt', tag: 'j', audience: ['a'], header: false });
  workload.send({ op: 'validate', tag: 'v', audience: 'a', svid: 'x.y.z', header: false });
  for (const tag of ['x', 'wrong', 'b', 'jb', 'j', 'v']) {
    const e = await workload.tagged(tag);
    t.is(e.event, 'error', tag);
    t.is(e.code, GRPC.INVALID_ARGUMENT, tag);
  }
  t.is(h.source.subscribeCalls.length, 0);
});

test.serial('updates pushed by the source reach open streams; an empty federated map means cleared; hints stay unique', async (t) => {
  const h = await setup(t);
  const me = selectors(`unix:uid:${process.getuid?.() ?? 0}`);
  const first = await issueSvid(td, 'spiffe://example.org/me', 'a');
  h.source.entries = [{ selectors: me, svid: first }];
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  workload.send({ op: 'x509bundles', tag: 'b' });
  workload.send({ op: 'jwtbundles', tag: 'j' });
  const m0 = await workload.tagged('s', 0);
  const b0 = await workload.tagged('b', 0);
  const j0 = await workload.tagged('j', 0);
  t.deepEqual(Object.keys(b0.bundles as object), ['spiffe://example.org']);
  t.deepEqual(Object.keys(j0.bundles as object), ['spiffe://example.org']);

  // Rotation, plus a second identity with a duplicate hint (dropped) and one with none (kept).
  const rotated = await issueSvid(td, 'spiffe://example.org/me', 'a');
  const dup = await issueSvid(td, 'spiffe://example.org/dup', 'a');
  const plain = await issueSvid(td, 'spiffe://example.org/plain');
  h.source.update({ entries: [{ selectors: me, svid: rotated }, { selectors: me, svid: dup }, { selectors: me, svid: plain }] });
  const m1 = await workload.tagged('s', 1);
  const s0 = (m0.svids as Array<{ cert: string }>)[0];
  const s1 = m1.svids as Array<{ spiffeId: string; cert: string; hint: string }>;
  t.not(s1[0]?.cert, s0?.cert);
  t.deepEqual(
    s1.map((s) => s.spiffeId),
    ['spiffe://example.org/me', 'spiffe://example.org/plain'],
  );
  t.true(h.lines.some((l) => l.includes('duplicate hint')));

  // Federation added, then removed: every message carries the full state.
  h.source.update({ federated: [federatedTd.bundle] });
  const m2 = await workload.tagged('s', 2);
  t.deepEqual(Object.keys(m2.federated as object), ['spiffe://partner.test']);
  const b1 = await workload.tagged('b', 1);
  t.deepEqual(Object.keys(b1.bundles as object).sort(), ['spiffe://example.org', 'spiffe://partner.test']);
  const j1 = await workload.tagged('j', 1);
  const jwks = (j1.bundles as Record<string, { keys: Array<{ kid: string; use: string }> }>)['spiffe://partner.test'];
  t.is(jwks?.keys[0]?.kid, federatedTd.jwtKey.kid);
  h.source.update({ federated: [] });
  const m3 = await workload.tagged('s', 3);
  t.deepEqual(m3.federated, {});
  const b2 = await workload.tagged('b', 2);
  t.deepEqual(Object.keys(b2.bundles as object), ['spiffe://example.org']);

  // Entries removed: the stream ends with PermissionDenied, never with OK.
  h.source.update({ entries: [] });
  const end = await workload.tagged('s', 4);
  t.is(end.event, 'error');
  t.is(end.code, GRPC.PERMISSION_DENIED);
  const status = await workload.next((e) => e.tag === 's' && e.event === 'status');
  t.is(status.code, GRPC.PERMISSION_DENIED);
});

test.serial('FetchJWTSVID needs an audience and returns tokens; ValidateJWTSVID returns the SPIFFE ID and claims as a Struct', async (t) => {
  const h = await setup(t);
  const me = selectors(`unix:uid:${process.getuid?.() ?? 0}`);
  h.source.entries = [
    { selectors: me, svid: await issueSvid(td, 'spiffe://example.org/a', 'x') },
    { selectors: me, svid: await issueSvid(td, 'spiffe://example.org/b', 'x') },
  ];
  const { workload } = await h.spawn();
  workload.send({ op: 'jwt', tag: 'none', audience: [] });
  t.is((await workload.tagged('none')).code, GRPC.INVALID_ARGUMENT);
  workload.send({ op: 'jwt', tag: 'bad-id', audience: ['aud'], spiffeId: 'https://nope' });
  t.is((await workload.tagged('bad-id')).code, GRPC.INVALID_ARGUMENT);
  workload.send({ op: 'jwt', tag: 'other', audience: ['aud'], spiffeId: 'spiffe://example.org/c' });
  t.is((await workload.tagged('other')).code, GRPC.PERMISSION_DENIED);

  workload.send({ op: 'jwt', tag: 'all', audience: ['aud'] });
  const all = await workload.tagged('all');
  const svids = all.svids as Array<{ spiffe_id: string; svid: string; hint: string }>;
  t.deepEqual(
    svids.map((s) => s.spiffe_id),
    ['spiffe://example.org/a'],
    'the second identity repeats hint x and is dropped',
  );
  workload.send({ op: 'jwt', tag: 'one', audience: ['aud', 'aud2'], spiffeId: 'spiffe://example.org/b' });
  const one = await workload.tagged('one');
  t.deepEqual(
    (one.svids as Array<{ spiffe_id: string }>).map((s) => s.spiffe_id),
    ['spiffe://example.org/b'],
  );

  const token = svids[0]?.svid ?? '';
  workload.send({ op: 'validate', tag: 'v', audience: 'aud', svid: token });
  const v = await workload.tagged('v');
  t.is(v.event, 'validated');
  t.is(v.spiffeId, 'spiffe://example.org/a');
  const fields = (v.claims as { fields: Record<string, Record<string, unknown>> }).fields;
  t.deepEqual(fields.sub, { stringValue: 'spiffe://example.org/a', kind: 'stringValue' });
  t.is(fields.exp?.kind, 'numberValue');
  const custom = fields.custom as { structValue: { fields: { n: { listValue: { values: Array<Record<string, unknown>> } } } } };
  t.deepEqual(
    custom.structValue.fields.n.listValue.values.map((x) => x.kind),
    ['numberValue', 'nullValue', 'boolValue'],
  );
  workload.send({ op: 'validate', tag: 'wrong-aud', audience: 'other', svid: token });
  t.is((await workload.tagged('wrong-aud')).code, GRPC.INVALID_ARGUMENT);
  workload.send({ op: 'validate', tag: 'no-aud', audience: '', svid: token });
  t.is((await workload.tagged('no-aud')).code, GRPC.INVALID_ARGUMENT);
  workload.send({ op: 'validate', tag: 'no-svid', audience: 'aud', svid: '' });
  t.is((await workload.tagged('no-svid')).code, GRPC.INVALID_ARGUMENT);
});

test.serial('oversized Workload API input is refused with InvalidArgument and a reason, before any attestation', async (t) => {
  const h = await setup(t);
  const me = selectors(`unix:uid:${process.getuid?.() ?? 0}`);
  h.source.entries = [{ selectors: me, svid: await issueSvid(td, 'spiffe://example.org/a', 'x') }];
  const { workload } = await h.spawn();
  const refusal = async (tag: string): Promise<[unknown, unknown, unknown]> => {
    const e = await workload.tagged(tag);
    return [e.code, e.sigilCode, e.sigilReason];
  };
  const bad = (reason: string): [number, string, string] => [GRPC.INVALID_ARGUMENT, 'ERR_INVALID_ARGUMENT', reason];

  workload.send({ op: 'jwt', tag: 'many', audience: Array.from({ length: 33 }, (_, i) => `aud${i}`) });
  t.deepEqual(await refusal('many'), bad('too-many-audiences'));
  workload.send({ op: 'jwt', tag: 'long', audience: ['ok', 'a'.repeat(513)] });
  t.deepEqual(await refusal('long'), bad('audience-too-long'));
  workload.send({ op: 'jwt', tag: 'empty-one', audience: ['ok', ''] });
  t.deepEqual(await refusal('empty-one'), bad('audience-required'));
  workload.send({ op: 'jwt', tag: 'at-limit', audience: Array.from({ length: 32 }, (_, i) => `${i}`.padEnd(512, 'a')) });
  t.is((await workload.tagged('at-limit')).event, 'jwt', '32 audiences of 512 bytes are fine');

  workload.send({ op: 'validate', tag: 'big-svid', audience: 'aud', svid: 'e'.repeat(64 * 1024 + 1) });
  t.deepEqual(await refusal('big-svid'), bad('svid-too-large'));
  workload.send({ op: 'validate', tag: 'long-aud', audience: 'a'.repeat(513), svid: 'x.y.z' });
  t.deepEqual(await refusal('long-aud'), bad('audience-too-long'));
  // past the receive limit grpc-js refuses the message itself, and the agent keeps serving
  workload.send({ op: 'validate', tag: 'huge', audience: 'aud', svid: 'e'.repeat(1024 * 1024) });
  t.is((await workload.tagged('huge')).code, GRPC.RESOURCE_EXHAUSTED);
  workload.send({ op: 'jwt', tag: 'after', audience: ['aud'] });
  t.is((await workload.tagged('after')).event, 'jwt');
  t.false(h.lines.some((l) => l.includes('eeeeeeee')), 'the oversized token is not logged');
});

test.serial('1,000 simultaneous connections are all served, none UNAVAILABLE', async (t) => {
  t.timeout(90_000);
  const h = await setup(t);
  h.source.entries = [{ selectors: selectors(`unix:uid:${process.getuid?.() ?? 0}`), svid: await issueSvid(td, 'spiffe://example.org/burst') }];
  const a = await h.spawn();
  const b = await h.spawn();
  a.workload.send({ op: 'burst', tag: 'burst', n: 500 });
  b.workload.send({ op: 'burst', tag: 'burst', n: 500 });
  const [ra, rb] = await Promise.all([a.workload.tagged('burst', 0, 80_000), b.workload.tagged('burst', 0, 80_000)]);
  t.deepEqual(ra.counts, { ok: 500 });
  t.deepEqual(rb.counts, { ok: 500 });
});

rootOnly('a process whose uid changes is re-attested: the open stream switches to the new identity, then is denied', async (t) => {
  const h = await setup(t);
  h.source.entries = [
    { selectors: selectors('unix:uid:0'), svid: await issueSvid(td, 'spiffe://example.org/root') },
    { selectors: selectors(`unix:uid:${NOBODY}`), svid: await issueSvid(td, 'spiffe://example.org/nobody') },
  ];
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  t.deepEqual(
    ((await workload.tagged('s', 0)).svids as Array<{ spiffeId: string }>).map((s) => s.spiffeId),
    ['spiffe://example.org/root'],
  );
  workload.send({ op: 'setid', tag: 'id', uid: NOBODY, gid: NOBODY });
  await workload.tagged('id');
  h.source.update(); // a push (e.g. a rotation) makes the server look at the process again
  const next = await workload.tagged('s', 1);
  t.deepEqual(
    (next.svids as Array<{ spiffeId: string }>).map((s) => s.spiffeId),
    ['spiffe://example.org/nobody'],
  );
  t.is(h.source.subscribeCalls.length, 2);
  t.true(h.source.subscribeCalls[1]?.some((s) => s.value === `uid:${NOBODY}`));
  t.is(h.source.subscriberCount, 1, 'the old subscription is gone');
  h.source.update({ entries: [] });
  t.is((await workload.tagged('s', 2)).code, GRPC.PERMISSION_DENIED);
});

test.serial('a process that exits before attestation finishes gets nothing, even with its connection held open', async (t) => {
  let entered!: (pid: number) => void;
  const enteredP = new Promise<number>((res) => (entered = res));
  let release!: () => void;
  const released = new Promise<void>((res) => (release = res));
  // A slow attestor (e.g. one asking an orchestrator) gives the process time to go away.
  const slow: WorkloadAttestor = {
    name: 'slow',
    async attest(peer) {
      entered(peer.pid);
      await released;
      return selectors('slow:ok:1');
    },
  };
  const h = await setup(t, { attestors: (processes) => [new UnixWorkloadAttestor({ processes }), slow] });
  h.source.entries = [{ selectors: selectors(`unix:uid:${process.getuid?.() ?? 0}`), svid: await issueSvid(td, 'spiffe://example.org/me') }];
  const { workload, ready } = await h.spawn();
  // A raw HTTP/2 call on a socket the workload can hand to another process before exiting.
  workload.send({ op: 'raw', tag: 'r' });
  t.is(await enteredP, ready.pid as number);
  workload.send({ op: 'handoff', tag: 'h' });
  const handed = await workload.tagged('h');
  await workload.exited;
  const holderPid = handed.holderPid as number;
  t.teardown(() => {
    try {
      process.kill(holderPid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  release();
  await waitUntil(() => h.lines.some((l) => l.includes('"reason":"process-gone"')));
  t.is(h.source.subscribeCalls.length, 0, 'no identity was looked up for a vanished process');
  t.false(h.lines.some((l) => l.includes('x509 svids sent')));
});

async function waitUntil(fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.serial('close() ends open streams and removes the socket file', async (t) => {
  const h = await setup(t);
  h.source.entries = [{ selectors: selectors(`unix:uid:${process.getuid?.() ?? 0}`), svid: await issueSvid(td, 'spiffe://example.org/me') }];
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  await workload.tagged('s', 0);
  await h.server.close();
  const e = await workload.tagged('s', 1);
  t.is(e.event, 'error');
  t.is(h.source.subscriberCount, 0);
  t.throws(() => statSync(h.socketPath));
});
