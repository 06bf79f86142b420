/**
 * High availability with real processes (issue 14): two `sigil server run` children with two data
 * dirs and two KEKs on one PostgreSQL schema (fresh per test, dropped at the end), one `sigil agent
 * run` child listing both in `serverAddresses`, and a workload (this test, through the agent's
 * socket) fetching its X.509 context continuously. The server the agent uses is killed with -9:
 * not one Workload API fetch fails, the agent moves to the other server, an entry created there
 * reaches the workload, and every SVID the workload holds — signed by either server's CA —
 * verifies with `openssl verify` against the bundle it was given with it. JWT-SVIDs minted
 * through either server validate through the agent.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import type { Daemon } from '../agent/support/processes.js';
import { admin, agentServer, authorityKeyId, serverHomeOnPostgres, startServer, verifyAll, withAdmin, type Home } from './support/ha.js';
import { supervise, UID } from './support/under-test.js';

const SCHEMA = `sigil_hap${process.pid}_${randomBytes(3).toString('hex')}`;

test.after.always(async () => {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`));
});

test('kill -9 of the agent\'s server: no failed fetch, the agent fails over, SVIDs of both servers verify against the given bundle', async (t) => {
  const homes = [await serverHomeOnPostgres('srv-a', SCHEMA), await serverHomeOnPostgres('srv-b', SCHEMA)];
  const agentDir = mkdtempSync(join(tmpdir(), 'sigil-ha-agent-'));
  chmodSync(agentDir, 0o755);
  const procs: { agent?: Daemon } = {};
  t.teardown(async () => {
    for (const d of [procs.agent, ...homes.map((h) => h.daemon)]) if (d?.running) d.child.kill('SIGKILL');
    await Promise.all([procs.agent, ...homes.map((h) => h.daemon)].map((d) => d?.closed));
    for (const h of homes) rmSync(h.dir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });
  await startServer(homes[0] as Home);
  await startServer(homes[1] as Home);
  const [a, b] = homes as [Home, Home];

  // the operator's setup, half through each server: they share every record
  writeFileSync(join(agentDir, 'bootstrap.pem'), await admin(a, ['bundle', 'show']));
  const { token, agentId } = (JSON.parse(await admin(b, ['token', 'generate', '--ttl', '10m', '--output', 'json'])) as { joinToken: { token: string; agentId: string } }).joinToken;
  writeFileSync(join(agentDir, 'join-token'), `${token}\n`, { mode: 0o600 });
  await admin(a, ['entry', 'create', '--parent-id', agentId, '--spiffe-id', 'spiffe://example.org/ha/one', '--selector', `unix:uid:${UID}`]);
  const socket = join(agentDir, 'agent.sock');
  const agentConfig = join(agentDir, 'agent.yaml');
  writeFileSync(
    agentConfig,
    `trustDomain: example.org\nserverAddresses:\n  - ${a.address}\n  - ${b.address}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${socket}\n` +
      `nodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\nsync:\n  retryInitial: 100ms\n  retryMax: 1s\n`,
  );
  const ag = supervise(['agent', 'run', '--config', agentConfig]);
  procs.agent = ag;
  await ag.until('the agent to serve', () => ag.stderr.includes('serving the Workload API'), 60_000);

  // the workload: one fetch after another, every answer kept, every failure counted
  const client = new WorkloadApiClient({ address: `unix://${socket}` });
  t.teardown(() => client.close());
  const contexts: X509Context[] = [];
  const failures: string[] = [];
  let fetching = true;
  const loop = (async () => {
    while (fetching) {
      try {
        contexts.push(await client.fetchX509Context(AbortSignal.timeout(10_000)));
      } catch (err) {
        failures.push(String(err));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const until = async (what: string, cond: () => boolean, ms = 60_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; agent: ${ag.stdout.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await until('the first SVID', () => contexts.some((c) => c.svids.length === 1));

  // JWT-SVIDs minted through either server validate through the agent
  for (const h of homes) {
    const jwt = (await admin(h, ['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/ha/jwt', '--audience', 'db'])).trim();
    const v = await client.validateJwtSvid(jwt, 'db');
    t.is(v.id.toString(), 'spiffe://example.org/ha/jwt', `JWT-SVID of ${h.id}`);
  }

  // kill -9 the server the agent uses
  const used = agentServer(ag);
  const victim = homes.find((h) => h.address === used);
  if (victim === undefined) throw new Error(`cannot tell which server the agent uses (${String(used)})`);
  const survivor = victim === a ? b : a;
  victim.daemon?.child.kill('SIGKILL');
  await victim.daemon?.closed;
  const fetchedBefore = contexts.length;

  // a change made through the survivor reaches the workload: the agent is on it now
  await admin(survivor, ['entry', 'create', '--parent-id', agentId, '--spiffe-id', 'spiffe://example.org/ha/two', '--selector', `unix:uid:${UID}`]);
  await until('the second SVID, minted by the other server', () => contexts.some((c) => c.svids.length === 2));
  await until('more fetches after the failover', () => contexts.length > fetchedBefore + 20);
  t.is(agentServer(ag), survivor.address, 'the agent moved to the surviving server');
  const jwt = (await admin(survivor, ['jwt', 'mint', '--spiffe-id', 'spiffe://example.org/ha/jwt', '--audience', 'db'])).trim();
  t.is((await client.validateJwtSvid(jwt, 'db')).id.toString(), 'spiffe://example.org/ha/jwt');
  fetching = false;
  await loop;

  t.deepEqual(failures, [], 'no Workload API fetch failed');
  t.true(contexts.length > 20);
  const last = contexts[contexts.length - 1] as X509Context;
  const issuers = new Set(last.svids.map((s) => Buffer.from(s.certificates[0]?.der ?? []).length > 0 && s.certificates[0] !== undefined ? authorityKeyId(s.certificates[0].der) : ''));
  t.is(issuers.size, 2, 'the two SVIDs come from the two servers\' CAs');
  // every SVID the workload held verifies against the bundle that came with it (sampled: first, around the kill, last)
  for (const ctx of [contexts[0], contexts[fetchedBefore - 1], contexts[fetchedBefore], last]) if (ctx !== undefined) await verifyAll(ctx);
});
