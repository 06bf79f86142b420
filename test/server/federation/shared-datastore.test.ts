/**
 * Two servers of one trust domain on one PostgreSQL schema: a federated bundle written through
 * one of them (the refresher's fetch or `bundle set` take the same path) reaches an agent of
 * the other on its open Workload API streams, with no restart and nothing told in process.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../../src/agent/agent.js';
import { WorkloadApiClient } from '../../../src/client/workload-api-client.js';
import type { BundleSet } from '../../../src/spiffe/bundle-set.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { silentLogger } from '../../../src/common/logger.js';
import { agentConfigFor, eventually, writeBootstrapBundle } from '../../agent/support/agent-harness.js';
import { createCa } from '../../helpers/pki.js';
import { makeServerDir, startTestServer } from '../../helpers/server.js';
import { toPem } from '../../../src/common/x509.js';
import { POSTGRES_URL, testSchemaPrefix } from '../../helpers/postgres.js';

const URL = POSTGRES_URL;
const SCHEMA = testSchemaPrefix('sigil_fed');
const OTHER = TrustDomain.parse('other.org');


test('a federated bundle set through one server reaches the streams of an agent of another server on the same datastore', async (t) => {
  const config = { datastore: { type: 'postgres', connectionString: URL, schema: SCHEMA, maxConnections: 4 } };
  const s1 = await startTestServer({ dir: await makeServerDir(), config });
  t.teardown(() => s1.destroy());
  const s2 = await startTestServer({ dir: await makeServerDir(), config });
  t.teardown(() => s2.destroy());

  const dir = mkdtempSync(join(tmpdir(), 'sigil-fed-ha-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeBootstrapBundle(s2, join(dir, 'bootstrap.pem'));
  const token = await s2.createJoinToken(600);
  writeFileSync(join(dir, 'join-token'), `${token.token.reveal()}\n`, { mode: 0o600 });
  const agentConfig = agentConfigFor(s2, dir, join(dir, 'join-token'));
  const agent = await startAgent(agentConfig, { logger: silentLogger() });
  t.teardown(() => agent.stop());
  await s2.createEntry({ spiffeId: 'spiffe://example.org/ha/fed', parentId: token.agentId, selectors: [`unix:uid:${process.getuid?.() ?? 0}`], federatesWith: ['other.org'], allowMissingFederatedBundle: true });

  const api = new WorkloadApiClient({ address: `unix://${agentConfig.socketPath}`, backoff: { initialMs: 50, maxMs: 500 } });
  t.teardown(() => api.close());
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  const seen: BundleSet[] = [];
  void api.watchX509Bundles({ onUpdate: (b) => seen.push(b) }, stop.signal);
  await eventually(() => (seen.length > 0 ? true : undefined), 20_000, 'first bundles');
  t.false(seen.at(-1)!.has(OTHER));

  const peer = await createCa({ id: 'spiffe://other.org' });
  await s1.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'other.org', document: Buffer.from(toPem(peer.der, 'CERTIFICATE')), format: 'pem', append: false });
  const got = await eventually(() => seen.find((b) => b.has(OTHER)), 20_000, 'the bundle written through the other server');
  t.deepEqual(got.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer().map((d) => Buffer.from(d).toString('hex')), [Buffer.from(peer.der).toString('hex')]);
});
