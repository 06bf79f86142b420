/**
 * An agent server address whose host is a DNS name stands for every address the name resolves
 * to (issue 14): expansion with the system resolver (`localhost`, IP literals left alone, a name
 * that does not resolve kept), and failover between two servers on one PostgreSQL schema behind
 * one name. The two servers listen on one port on 127.0.0.1 and 127.0.0.2; the name resolves to
 * both through the agent's lookup seam (the OS resolver edge: /etc/hosts here is not ours to
 * change). The agent resolves at start, uses both, and after its server stops it moves to the
 * other (and resolves again): an entry created there reaches the workload.
 */
import test from 'ava';
import { createServer } from 'node:net';
import { expandAddresses, systemLookup } from '../../src/agent/server-client.js';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { isSigilError } from '../../src/common/errors.js';
import type { X509Context } from '../../src/client/x509-context.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';
import { POSTGRES_URL, testSchemaPrefix } from '../helpers/postgres.js';

const URL = POSTGRES_URL;
const SCHEMA = testSchemaPrefix('sigil_hadns');
const UID_SELECTOR = `unix:uid:${process.getuid?.() ?? 0}`;


test('a DNS name expands to every address the system resolver gives; IP literals and unresolvable names stay', async (t) => {
  const system = await systemLookup('localhost');
  t.true(system.includes('127.0.0.1'), system.join(','));
  const expanded = await expandAddresses(['localhost:8081', '10.1.2.3:8081', '[::1]:8082', 'no-such-host.invalid:8083'], systemLookup);
  const fromLocalhost = system.map((ip) => (ip.includes(':') ? `[${ip}]:8081` : `${ip}:8081`));
  t.deepEqual(expanded, [...fromLocalhost, '10.1.2.3:8081', '[::1]:8082', 'no-such-host.invalid:8083']);
  // several addresses for one name, in the resolver's order, duplicates dropped
  const two = await expandAddresses(['sigil.test:1', '127.0.0.2:1'], async () => ['127.0.0.2', '::1', '127.0.0.2']);
  t.deepEqual(two, ['127.0.0.2:1', '[::1]:1']);
});

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function fetchHaving(client: WorkloadApiClient, spiffeId: string): Promise<X509Context> {
  return eventually(async () => {
    try {
      const ctx = await client.fetchX509Context(AbortSignal.timeout(2000));
      return ctx.svids.some((s) => s.id.toString() === spiffeId) ? ctx : undefined;
    } catch (err) {
      if (isSigilError(err, 'ERR_PERMISSION_DENIED') || isSigilError(err, 'ERR_UNAVAILABLE') || isSigilError(err, 'ERR_CANCELLED')) return undefined;
      throw err;
    }
  }, 30_000, `an X509-SVID for ${spiffeId}`);
}

test('one name for two servers: the agent uses both and fails over to the other when its server stops', async (t) => {
  const port = await freePort('127.0.0.1');
  const datastore = { type: 'postgres', connectionString: URL, schema: SCHEMA, maxConnections: 4 };
  const servers = new Map<string, TestServer>();
  t.teardown(async () => {
    for (const s of servers.values()) await s.destroy();
  });
  for (const [id, ip] of [['srv-1', '127.0.0.1'], ['srv-2', '127.0.0.2']] as const) {
    servers.set(`${ip}:${port}`, await startTestServer({ config: { datastore, serverId: id, agentApi: { address: `${ip}:${port}` }, ca: { propagationMargin: '1s' } } }));
  }
  const [first, second] = [...servers.values()] as [TestServer, TestServer];
  await eventually(() => first.server.bundles.x509Anchors().length === 2 || undefined, 20_000, 'both CAs in the bundle');

  const lookups: string[] = [];
  const lookup = async (host: string): Promise<string[]> => {
    lookups.push(host);
    if (host === 'sigil-servers.test') return ['127.0.0.1', '127.0.0.2'];
    throw new Error(`no such host ${host}`);
  };
  const a = await startTestAgent(t, first, { lookup, bootstrapRoots: first.server.bundles.x509Anchors(), config: { serverAddress: `sigil-servers.test:${port}` } });
  t.deepEqual(lookups, ['sigil-servers.test']);
  const started = a.lines.map((l) => JSON.parse(l) as { msg?: string; server?: string; servers?: string[] }).find((l) => l.msg === 'agent started');
  t.deepEqual(started?.servers, [`127.0.0.1:${port}`, `127.0.0.2:${port}`]);
  const used = started?.server ?? '';
  const live = [...servers.keys()].find((k) => k !== used) ?? '';
  t.true(servers.has(used), used);

  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  await first.createEntry({ spiffeId: 'spiffe://example.org/dns/one', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await fetchHaving(client, 'spiffe://example.org/dns/one');

  // the agent's server stops: the agent resolves again and moves to the other address
  await servers.get(used)?.stop();
  servers.delete(used);
  const other = servers.get(live) as TestServer;
  t.is(other, used === `127.0.0.1:${port}` ? second : first);
  await other.createEntry({ spiffeId: 'spiffe://example.org/dns/two', parentId: a.agentId, selectors: [UID_SELECTOR] });
  await fetchHaving(client, 'spiffe://example.org/dns/two');
  const failovers = a.lines.map((l) => JSON.parse(l) as { msg?: string; from?: string; to?: string }).filter((l) => l.msg === 'server call failed; using the next server');
  t.true(failovers.some((l) => l.from === used && l.to === live), JSON.stringify(failovers));
  t.true(lookups.length >= 2, 'resolved again after the failure');
});
