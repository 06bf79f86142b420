/**
 * High availability with real processes (issue 14, "Tests with real processes"): three `sigil
 * server run` children with three data dirs and three KEKs on one PostgreSQL schema (fresh, dropped
 * at the end), two `sigil agent run` children each listing all three in `serverAddresses`, and two
 * workloads (this test, through each agent's socket) fetching their X.509 contexts continuously.
 *
 * One server is killed with -9, then another (each the one an agent talks to, so both agents fail
 * over), then the first comes back, its CA is rotated on the third (prepare, then activate once the
 * 1 s propagation margin allows) while the second is still down, and the second comes back. Entries
 * are created through the admin socket of a live server after each step. At the end: not one
 * Workload API fetch failed; every acknowledged entry exists on every server and reached its
 * workload; every SVID a workload held verifies with `openssl verify` against the bundle it came
 * with; the bundle carries the rotated authority; and a JWT-SVID minted through each server
 * validates through each agent, before and after.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import type { Daemon } from '../agent/support/processes.js';
import { admin, agentServer, authorityKeyId, serverHomeOnPostgres, startServer, verifyAll, withAdmin, type Home } from './support/ha.js';
import { sigil, supervise, UID } from './support/under-test.js';

const SCHEMA = `sigil_ha3p${process.pid}_${randomBytes(3).toString('hex')}`;

test.after.always(async () => {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`));
});

/** One agent child with its folder, and the workload fetching through its socket. */
interface Node {
  readonly name: string;
  readonly dir: string;
  readonly agentId: string;
  readonly socket: string;
  daemon?: Daemon;
  client?: WorkloadApiClient;
  readonly contexts: X509Context[];
  readonly failures: string[];
  /** SPIFFE IDs of this agent's workload entries whose create was acknowledged. */
  readonly acknowledged: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms: number, context: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; ${context()}`);
    await sleep(50);
  }
}

test('three servers, two agents: two servers killed with -9 and restarted, a CA rotated meanwhile; no failed fetch, no lost write, every SVID verifies', async (t: ExecutionContext) => {
  const homes = [await serverHomeOnPostgres('srv-a', SCHEMA), await serverHomeOnPostgres('srv-b', SCHEMA), await serverHomeOnPostgres('srv-c', SCHEMA)];
  const nodes: Node[] = [];
  let fetching = true;
  t.teardown(async () => {
    fetching = false;
    for (const n of nodes) n.client?.close();
    const all = [...nodes.map((n) => n.daemon), ...homes.map((h) => h.daemon)];
    for (const d of all) if (d?.running) d.child.kill('SIGKILL');
    await Promise.all(all.map((d) => d?.closed));
    for (const h of homes) rmSync(h.dir, { recursive: true, force: true });
    for (const n of nodes) rmSync(n.dir, { recursive: true, force: true });
  });
  for (const h of homes) await startServer(h);
  const live = (): Home[] => homes.filter((h) => h.daemon?.running === true);
  const logs = (): string => nodes.map((n) => `${n.name}: ${n.daemon?.stdout.slice(-2000) ?? ''}`).join('\n');

  // two agents, each registered through a different server, both listing all three
  const bootstrap = await admin(homes[0] as Home, ['bundle', 'show']);
  for (const [i, via] of [homes[0], homes[2]].entries()) {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-ha3-agent-'));
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'bootstrap.pem'), bootstrap);
    const { token, agentId } = (JSON.parse(await admin(via as Home, ['token', 'generate', '--ttl', '10m', '--output', 'json'])) as { joinToken: { token: string; agentId: string } }).joinToken;
    writeFileSync(join(dir, 'join-token'), `${token}\n`, { mode: 0o600 });
    const socket = join(dir, 'agent.sock');
    writeFileSync(
      join(dir, 'agent.yaml'),
      `trustDomain: example.org\nserverAddresses:\n${homes.map((h) => `  - ${h.address}\n`).join('')}trustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${socket}\n` +
        `nodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\nsync:\n  retryInitial: 100ms\n  retryMax: 1s\n`,
    );
    nodes.push({ name: `agent-${i + 1}`, dir, agentId, socket, contexts: [], failures: [], acknowledged: [] });
  }

  // an acknowledged write: an entry for node n's workload created through server h (live now)
  let serial = 0;
  const write = async (h: Home, n: Node): Promise<void> => {
    const id = `spiffe://example.org/ha3/${n.name}/w${serial++}`;
    await admin(h, ['entry', 'create', '--parent-id', n.agentId, '--spiffe-id', id, '--selector', `unix:uid:${UID}`]);
    n.acknowledged.push(id);
  };
  const writeEverywhere = async (): Promise<void> => {
    for (const [i, n] of nodes.entries()) {
      const l = live();
      await write(l[i % l.length] as Home, n);
    }
  };
  const held = (n: Node): Set<string> => new Set((n.contexts[n.contexts.length - 1]?.svids ?? []).map((s) => s.id.toString()));
  const reached = (what: string): Promise<void> =>
    until(what, () => nodes.every((n) => n.acknowledged.every((id) => held(n).has(id))), 60_000, logs);

  await writeEverywhere();
  for (const n of nodes) {
    const d = supervise(['agent', 'run', '--config', join(n.dir, 'agent.yaml')]);
    n.daemon = d;
    await d.until(`${n.name} to serve`, () => d.stderr.includes('serving the Workload API'), 60_000);
  }

  // the workloads: one fetch after another, every answer kept, every failure counted
  const loops = nodes.map(async (n) => {
    const client = new WorkloadApiClient({ address: `unix://${n.socket}` });
    n.client = client;
    while (fetching) {
      try {
        n.contexts.push(await client.fetchX509Context(AbortSignal.timeout(10_000)));
      } catch (err) {
        n.failures.push(String(err));
      }
      await sleep(20);
    }
  });
  await reached('the first SVIDs');

  const jwtsEverywhere = async (when: string): Promise<void> => {
    for (const h of homes) {
      const jwt = (await admin(h, ['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/ha3/jwt', '--audience', 'db'])).trim();
      for (const n of nodes) {
        const v = await (n.client as WorkloadApiClient).validateJwtSvid(jwt, 'db');
        t.is(v.id.toString(), 'spiffe://example.org/ha3/jwt', `${when}: JWT-SVID of ${h.id} through ${n.name}`);
      }
    }
  };
  await jwtsEverywhere('before');

  // kill -9 the server an agent uses; the agents move on, writes go through a live server
  const kill = async (h: Home): Promise<void> => {
    h.daemon?.child.kill('SIGKILL');
    await h.daemon?.closed;
  };
  const usedBy = (n: Node): Home | undefined => homes.find((h) => h.address === agentServer(n.daemon as Daemon));
  const first = usedBy(nodes[0] as Node);
  if (first === undefined) throw new Error(`cannot tell which server ${nodes[0]?.name} uses; ${logs()}`);
  await kill(first);
  await writeEverywhere();
  await reached('the entries written after the first kill');
  t.not(agentServer(nodes[0]?.daemon as Daemon), first.address, 'the first agent moved off the killed server');

  // then another: the one the second agent uses now if it is alive, else the one the first moved to
  const candidate = usedBy(nodes[1] as Node);
  const second = candidate !== undefined && candidate !== first ? candidate : usedBy(nodes[0] as Node);
  if (second === undefined || second === first) throw new Error(`cannot pick a second server to kill; ${logs()}`);
  await kill(second);
  const third = live()[0] as Home;
  t.is(live().length, 1);
  await writeEverywhere();
  await reached('the entries written with one server left');
  for (const n of nodes) t.is(agentServer(n.daemon as Daemon), third.address, `${n.name} is on the one server left`);

  // the first comes back; the third's X.509 CA is rotated while the second is still down
  await startServer(first);
  const authoritiesBefore = new Set(nodes.flatMap((n) => (n.contexts[n.contexts.length - 1]?.bundles.get('example.org')?.x509Authorities ?? []).map((c) => Buffer.from(c.der).toString('hex'))));
  const activeBefore = activeX509(await admin(third, ['localauthority', 'show', '--output', 'json']), third.id);
  const prepared = JSON.parse(await admin(third, ['localauthority', 'x509', 'prepare', '--output', 'json'])) as Authorities;
  const next = prepared.authorities.find((a) => a.kind === 'x509' && a.phase === 'prepared' && a.serverId === third.id);
  if (next === undefined) throw new Error(`no prepared X.509 authority of ${third.id}: ${JSON.stringify(prepared)}`);
  await until(
    'the prepared authority in both workloads\' bundles before it is activated (publish before use)',
    () =>
      nodes.every((n) =>
        (n.contexts[n.contexts.length - 1]?.bundles.get('example.org')?.x509Authorities ?? []).some((c) => !authoritiesBefore.has(Buffer.from(c.der).toString('hex'))),
      ),
    60_000,
    logs,
  );
  await until(
    'the prepared authority to activate after the propagation margin',
    async () => {
      const r = await sigil(['localauthority', 'x509', 'activate', '--output', 'json', '--config', third.config]);
      if (r.code !== 0 && !r.stderr.includes('propagat')) throw new Error(`activate on ${third.id}: ${r.code} ${r.stderr}`);
      return r.code === 0;
    },
    30_000,
    logs,
  );
  const activeAfter = activeX509(await admin(third, ['localauthority', 'show', '--output', 'json']), third.id);
  t.is(activeAfter, next.id, `the prepared authority of ${third.id} is the active one`);
  t.not(activeAfter, activeBefore);
  // the other live server (restarted meanwhile) sees the rotation in the shared journal
  t.is(activeX509(await admin(first, ['localauthority', 'show', '--output', 'json']), third.id), next.id, `${first.id} lists ${third.id}'s new authority as active`);
  await writeEverywhere();
  await reached('the entries written after the rotation');

  // the second comes back; writes through each restarted server
  await startServer(second);
  t.is(live().length, 3);
  for (const n of nodes) {
    await write(first, n);
    await write(second, n);
  }
  await reached('the entries written through the restarted servers');
  await jwtsEverywhere('after');

  const fetchedAtEnd = nodes.map((n) => n.contexts.length);
  await until('more fetches after the last write', () => nodes.every((n, i) => n.contexts.length > (fetchedAtEnd[i] as number) + 10), 60_000, logs);
  fetching = false;
  await Promise.all(loops);

  for (const n of nodes) {
    t.deepEqual(n.failures, [], `no Workload API fetch of ${n.name}'s workload failed`);
    t.true(n.contexts.length > 50, `${n.name}'s workload fetched continuously (${n.contexts.length})`);
    t.true(n.acknowledged.length >= 6);
    t.log(`${n.name}: ${n.contexts.length} fetches, ${n.acknowledged.length} entries, on ${agentServer(n.daemon as Daemon)}`);
  }
  // no acknowledged write is lost: every server has every entry
  for (const h of homes) {
    const listed = await admin(h, ['entry', 'list', '--output', 'json']);
    for (const n of nodes) for (const id of n.acknowledged) t.true(listed.includes(`"${id}"`), `${id} listed by ${h.id}`);
  }
  // every SVID a workload held verifies against the bundle it came with (each distinct pair once)
  let verified = 0;
  for (const n of nodes) {
    const seen = new Set<string>();
    for (const ctx of n.contexts) {
      const bundle = (ctx.bundles.get('example.org')?.x509Authorities ?? []).map((c) => Buffer.from(c.der).toString('base64')).join(',');
      const key = `${ctx.svids.map((s) => Buffer.from(s.certificates[0]?.der ?? []).toString('base64')).join(',')}|${bundle}`;
      if (seen.has(key)) continue;
      seen.add(key);
      await verifyAll(ctx);
      verified += ctx.svids.length;
    }
  }
  t.log(`${verified} SVID/bundle pairs verified with openssl`);
  t.true(verified > 0);
  // the workloads held SVIDs of several servers' CAs (the agents were signed for by more than one)
  const issuers = new Set(nodes.flatMap((n) => n.contexts.flatMap((c) => c.svids.map((s) => authorityKeyId((s.certificates[0] as { der: Uint8Array }).der)))));
  t.log(`SVIDs from ${issuers.size} CAs`);
  t.true(issuers.size >= 2, 'SVIDs signed by more than one server\'s CA');
});

interface Authorities {
  readonly authorities: readonly { kind: string; id: string; phase: string; serverId: string }[];
}

/** The id of server `serverId`'s active X.509 authority in `localauthority show --output json`. */
function activeX509(json: string, serverId: string): string | undefined {
  return (JSON.parse(json) as Authorities).authorities.find((a) => a.kind === 'x509' && a.phase === 'active' && a.serverId === serverId)?.id;
}
