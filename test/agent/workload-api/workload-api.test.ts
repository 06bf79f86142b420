/**
 * The Workload API end to end: a real Unix socket in a mkdtemp folder, real workload
 * processes (Node children, some run as `nobody` through setpriv) speaking gRPC to it, the
 * real unix attestor over the real /proc, and the real agent's SVID cache behind it (a real
 * server and agent; entries created through the server). The server under test is a second
 * Workload API server over that cache, so a test can give it its own attestors and socket.
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
import type { SvidCache } from '../../../src/agent/svid-cache.js';
import { parseSelector } from '../../../src/spiffe/selector.js';
import { jwtClaims, signJwt } from '../../helpers/pki.js';
import { startTestServer, type TestEntrySpec, type TestServer } from '../../helpers/server.js';
import { TestTrustDomain } from '../../helpers/workload-source.js';
import { eventually, startTestAgent } from '../support/agent-harness.js';
import { startWorkload, writeWorkloadScript, type Workload, type WorkloadEvent, type WorkloadOptions } from './support/workload-child.js';

const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;
const GRPC = { INVALID_ARGUMENT: 3, RESOURCE_EXHAUSTED: 8, PERMISSION_DENIED: 7, UNAVAILABLE: 14 } as const;

const ME = `unix:uid:${process.getuid?.() ?? 0}`;

let script: string;
let federatedTd: TestTrustDomain;

test.before(async () => {
  script = writeWorkloadScript();
  federatedTd = await TestTrustDomain.create('partner.test');
});

interface Harness {
  readonly server: WorkloadApiServer;
  readonly socketPath: string;
  readonly base: string;
  /** The real agent's SVID cache the server under test answers from. */
  readonly cache: SvidCache;
  readonly sigil: TestServer;
  readonly lines: string[];
  spawn(options?: WorkloadOptions): Promise<{ workload: Workload; ready: WorkloadEvent }>;
  /** Creates an entry under the agent (selector: this test's uid unless given). */
  entry(spiffeId: string, spec?: Partial<Omit<TestEntrySpec, 'spiffeId' | 'parentId'>>): Promise<string>;
  /** Waits until the agent holds exactly `n` X509-SVIDs. */
  holds(n: number): Promise<void>;
  /** Changes an entry as another writer would (the agent then mints anew and pushes). */
  change(entryId: string, change: { dnsNames?: string[]; federatesWith?: string[] }): Promise<void>;
}

async function setup(t: ExecutionContext, options: { attestors?: (processes: ProcfsProcessInfo) => WorkloadAttestor[] } = {}): Promise<Harness> {
  const sigil = await startTestServer();
  t.teardown(() => sigil.destroy());
  const agent = await startTestAgent(t, sigil);
  const cache = agent.agent.cache;
  const base = mkdtempSync(join(tmpdir(), 'sigil-wapi-'));
  chmodSync(base, 0o755); // nobody must reach the socket
  const socketPath = join(base, 'run', 'agent.sock');
  const { logger, lines } = memoryLogger('debug');
  const processes = new ProcfsProcessInfo();
  const attestors = options.attestors?.(processes) ?? [new UnixWorkloadAttestor({ processes })];
  const server = await startWorkloadApiServer({ socketPath, attestors, identities: cache, logger, clock: new ManualClock(), processInfo: processes });
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
    cache,
    sigil,
    lines,
    async spawn(o) {
      const r = await startWorkload(script, socketPath, o);
      workloads.push(r.workload);
      return r;
    },
    entry: (spiffeId, spec = {}) => sigil.createEntry({ selectors: [ME], ...spec, spiffeId, parentId: agent.agentId }),
    async holds(n) {
      await eventually(() => (cache.stats().svids === n ? true : undefined), 20_000, `the agent to hold ${n} X509-SVIDs`);
    },
    async change(entryId, change) {
      const e = await sigil.server.datastore.getEntry(entryId);
      if (e === undefined) throw new Error(`no entry ${entryId}`);
      await sigil.server.datastore.updateEntry({ ...e, ...change });
    },
  };
}

/** The first event of `tag` (not a final status) after the first `after` ones that satisfies `pred`. */
function dataWhere(w: Workload, tag: string, pred: (e: WorkloadEvent) => boolean, after = 0): Promise<WorkloadEvent> {
  return w.waitFor((events) => events.filter((e) => e.tag === tag && e.event !== 'status').slice(after).find(pred), 20_000);
}

const idsOf = (e: WorkloadEvent): string[] => ((e.svids as Array<{ spiffeId: string }> | undefined) ?? []).map((s) => s.spiffeId);

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
  const h = await setup(t);
  const base = mkdtempSync(join(tmpdir(), 'sigil-wapi-path-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const opts = { attestors: [], identities: h.cache, logger: memoryLogger().logger, clock: new ManualClock() };

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
  await h.entry('spiffe://example.org/me', { hint: 'internal' });
  await h.holds(1);
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
  // The entry's only selector is the uid: the kernel's view of that very process matched it.
  t.is(`unix:uid:${String(ready.uid)}`, ME);
  t.is(h.cache.stats().subscribers, 1);
  t.true(h.lines.some((l) => l.includes('"x509 svids sent"') && l.includes(`"peerPid":${String(ready.pid)}`) && l.includes('spiffe://example.org/me')));
});

rootOnly('a workload running as another uid gets PermissionDenied "no identity issued"', async (t) => {
  const h = await setup(t);
  await h.entry('spiffe://example.org/root-only', { selectors: ['unix:uid:0'] });
  await h.holds(1);
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
  await h.entry('spiffe://example.org/me');
  await h.holds(1);
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
  t.is(h.cache.stats().subscribers, 0);
});

test.serial('updates pushed by the agent reach open streams; an empty federated map means cleared; hints stay unique', async (t) => {
  const h = await setup(t);
  const me = await h.entry('spiffe://example.org/me', { hint: 'a' });
  await h.holds(1);
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  workload.send({ op: 'x509bundles', tag: 'b' });
  workload.send({ op: 'jwtbundles', tag: 'j' });
  const m0 = await workload.tagged('s', 0);
  const b0 = await workload.tagged('b', 0);
  const j0 = await workload.tagged('j', 0);
  t.deepEqual(idsOf(m0), ['spiffe://example.org/me']);
  t.deepEqual(Object.keys(b0.bundles as object), ['spiffe://example.org']);
  t.deepEqual(Object.keys(j0.bundles as object), ['spiffe://example.org']);

  // Rotation, plus a second identity with a duplicate hint (dropped: it sorts after /me) and one with none (kept).
  const s0 = (m0.svids as Array<{ cert: string }>)[0];
  await h.change(me, { dnsNames: ['rotated.example.org'] });
  await h.entry('spiffe://example.org/plain');
  await h.entry('spiffe://example.org/zdup', { hint: 'a' });
  const m1 = await dataWhere(workload, 's', (e) => idsOf(e).length === 2 && (e.svids as Array<{ cert: string }>)[0]?.cert !== s0?.cert);
  t.deepEqual(idsOf(m1), ['spiffe://example.org/me', 'spiffe://example.org/plain']);
  await eventually(() => (h.lines.some((l) => l.includes('duplicate hint')) ? true : undefined), 10_000, 'the duplicate hint logged');
  const seen = (tag: string): number => workload.events.filter((e) => e.tag === tag && e.event === 'data').length;

  // Federation added, then removed: every message carries the full state.
  await h.sigil.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.test', document: Buffer.from(federatedTd.bundle().toJwks()), format: 'spiffe', append: false });
  let ns = seen('s');
  let nb = seen('b');
  const nj = seen('j');
  await h.change(me, { dnsNames: ['rotated.example.org'], federatesWith: ['spiffe://partner.test'] });
  const m2 = await dataWhere(workload, 's', (e) => Object.keys(e.federated as object).length > 0, ns);
  t.deepEqual(Object.keys(m2.federated as object), ['spiffe://partner.test']);
  t.deepEqual(idsOf(m2), ['spiffe://example.org/me', 'spiffe://example.org/plain']);
  const b1 = await dataWhere(workload, 'b', (e) => Object.keys(e.bundles as object).length > 1, nb);
  t.deepEqual(Object.keys(b1.bundles as object).sort(), ['spiffe://example.org', 'spiffe://partner.test']);
  const j1 = await dataWhere(workload, 'j', (e) => Object.keys(e.bundles as object).length > 1, nj);
  const jwks = (j1.bundles as Record<string, { keys: Array<{ kid: string; use: string }> }>)['spiffe://partner.test'];
  t.is(jwks?.keys[0]?.kid, federatedTd.jwtKey.kid);
  [ns, nb] = [seen('s'), seen('b')];
  await h.change(me, { dnsNames: ['rotated.example.org'], federatesWith: [] });
  const m3 = await dataWhere(workload, 's', (e) => e.event === 'data' && Object.keys(e.federated as object).length === 0, ns);
  t.deepEqual(m3.federated, {});
  const b2 = await dataWhere(workload, 'b', (e) => Object.keys(e.bundles as object).length === 1, nb);
  t.deepEqual(Object.keys(b2.bundles as object), ['spiffe://example.org']);

  // Entries removed: the stream ends with PermissionDenied, never with OK.
  const ids = (await h.sigil.server.datastore.listEntries({})).items.map((e) => e.id);
  await h.sigil.admin.call('Entries', 'BatchDeleteEntry', { ids });
  const end = await dataWhere(workload, 's', (e) => e.event === 'error');
  t.is(end.code, GRPC.PERMISSION_DENIED);
  const status = await workload.next((e) => e.tag === 's' && e.event === 'status');
  t.is(status.code, GRPC.PERMISSION_DENIED);
});

test.serial('FetchJWTSVID needs an audience and returns tokens; ValidateJWTSVID returns the SPIFFE ID and claims as a Struct', async (t) => {
  const h = await setup(t);
  // b federates with partner.test, so a token of that domain (with claims of every JSON kind) validates for this workload
  await h.sigil.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'partner.test', document: Buffer.from(federatedTd.bundle().toJwks()), format: 'spiffe', append: false });
  await h.entry('spiffe://example.org/a', { hint: 'x' });
  await h.entry('spiffe://example.org/b', { hint: 'x', federatesWith: ['partner.test'] });
  await h.holds(2);
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
  const own = (v.claims as { fields: Record<string, Record<string, unknown>> }).fields;
  t.deepEqual(own.sub, { stringValue: 'spiffe://example.org/a', kind: 'stringValue' });
  t.is(own.exp?.kind, 'numberValue');
  const foreign = signJwt(federatedTd.jwtKey, { ...jwtClaims('spiffe://partner.test/caller', 'aud'), custom: { n: [1, null, true] } });
  workload.send({ op: 'validate', tag: 'vf', audience: 'aud', svid: foreign });
  const vf = await workload.tagged('vf');
  t.is(vf.event, 'validated');
  t.is(vf.spiffeId, 'spiffe://partner.test/caller');
  const fields = (vf.claims as { fields: Record<string, Record<string, unknown>> }).fields;
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
  await h.entry('spiffe://example.org/a', { hint: 'x' });
  await h.holds(1);
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
  await h.entry('spiffe://example.org/burst');
  await h.holds(1);
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
  const root = await h.entry('spiffe://example.org/root', { selectors: ['unix:uid:0'] });
  const nobody = await h.entry('spiffe://example.org/nobody', { selectors: [`unix:uid:${NOBODY}`] });
  await h.holds(2);
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  t.deepEqual(
    ((await workload.tagged('s', 0)).svids as Array<{ spiffeId: string }>).map((s) => s.spiffeId),
    ['spiffe://example.org/root'],
  );
  workload.send({ op: 'setid', tag: 'id', uid: NOBODY, gid: NOBODY });
  await workload.tagged('id');
  await h.change(root, { dnsNames: ['rotated.example.org'] }); // a push (a rotation) makes the server look at the process again
  const next = await dataWhere(workload, 's', (e) => idsOf(e).includes('spiffe://example.org/nobody'), 1);
  t.deepEqual(idsOf(next), ['spiffe://example.org/nobody']);
  t.is(h.cache.stats().subscribers, 1, 'the old subscription is gone');
  await h.sigil.admin.call('Entries', 'BatchDeleteEntry', { ids: [nobody] });
  t.is((await dataWhere(workload, 's', (e) => e.event === 'error')).code, GRPC.PERMISSION_DENIED);
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
      return [parseSelector('slow:ok:1')];
    },
  };
  const h = await setup(t, { attestors: (processes) => [new UnixWorkloadAttestor({ processes }), slow] });
  await h.entry('spiffe://example.org/me');
  await h.holds(1);
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
  t.is(h.cache.stats().subscribers, 0, 'no identity was looked up for a vanished process');
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
  await h.entry('spiffe://example.org/me');
  await h.holds(1);
  const { workload } = await h.spawn();
  workload.send({ op: 'x509', tag: 's' });
  await workload.tagged('s', 0);
  t.is(h.cache.stats().subscribers, 1);
  await h.server.close();
  const e = await workload.tagged('s', 1);
  t.is(e.event, 'error');
  t.is(h.cache.stats().subscribers, 0);
  t.throws(() => statSync(h.socketPath));
});
