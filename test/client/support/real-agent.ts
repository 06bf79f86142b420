/**
 * The client library's behaviour tests run against the real agent: a real server and agent
 * (test/e2e/support/stack.ts), with registration entries for this test process's uid. Helpers
 * here are what those tests need beyond the stack: a foreign trust domain's bundle set on the
 * server (federation), waiting until the agent holds a number of SVIDs, and a rotation (an
 * entry change that makes the agent mint a new SVID and push it on open streams).
 */
import type { Stack } from '../../e2e/support/stack.js';
import { eventually } from '../../agent/support/agent-harness.js';
import type { TestTrustDomain } from '../../helpers/workload-source.js';
import { Bundle } from '../../../src/spiffe/bundle.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';

/** Sets `other`'s bundle on the server as a federated bundle (entries may then federate with it). */
export async function setFederatedBundle(stack: Stack, other: TestTrustDomain): Promise<void> {
  await stack.server.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: other.td.name, document: Buffer.from(other.bundle().toJwks()), format: 'spiffe', append: false });
}

/** Waits until the agent holds exactly `n` X509-SVIDs (generous bound: it syncs and mints first). */
export async function agentHolds(stack: Stack, n: number): Promise<void> {
  await eventually(() => (stack.agent?.cache.stats().svids === n ? true : undefined), 20_000, `the agent to hold ${n} X509-SVIDs`);
}

/** The server's own bundle as the admin API serves it. */
export async function ownBundle(stack: Stack): Promise<Bundle> {
  const reply = await stack.server.admin.call<{ document: Buffer }>('Bundles', 'GetBundle');
  return Bundle.parseJwks(TrustDomain.parse('example.org'), reply.document);
}

let rotation = 0;
/** Changes the entry's DNS names (as another writer would): the agent mints a new SVID for it and pushes it. */
export async function rotateEntry(stack: Stack, entryId: string): Promise<void> {
  const ds = stack.server.server.datastore;
  const e = await ds.getEntry(entryId);
  if (e === undefined) throw new Error(`no entry ${entryId}`);
  rotation++;
  await ds.updateEntry({ ...e, dnsNames: [`r${rotation}.example.org`] });
}

/** Deletes entries through the admin API (their callers are left without those identities). */
export async function deleteEntries(stack: Stack, ids: readonly string[]): Promise<void> {
  await stack.server.admin.call('Entries', 'BatchDeleteEntry', { ids: [...ids] });
}
