/**
 * Federation on the agent path, end to end: an operator sets a federated bundle for
 * spiffe://other.org with `sigil bundle set` (a real CLI child against the real server),
 * an entry federates with it, and the workload's open FetchX509SVID, FetchX509Bundles and
 * FetchJWTBundles streams carry it; a JWT-SVID of other.org then validates through the agent.
 * `sigil bundle delete` clears it (the map becomes empty) on the same open streams.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import type { BundleSet } from '../../src/spiffe/bundle-set.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { eventually } from '../agent/support/agent-harness.js';
import { runSigil } from '../agent/support/processes.js';
import { jwtClaims, signJwt } from '../helpers/pki.js';
import { TestTrustDomain } from '../helpers/workload-source.js';
import { startStack } from './support/stack.js';

const OTHER = TrustDomain.parse('other.org');
const OWN = TrustDomain.parse('example.org');

test.serial('a federated bundle set by the operator reaches open streams of a federating workload; deleting it clears them', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.close());
  const other = await TestTrustDomain.create('other.org');
  const adminSocket = stack.server.server.adminSocketPath;

  // the bundle comes later, so the entry asks explicitly to be let in without one
  await stack.entry({ spiffeId: 'spiffe://example.org/e2e/fed', federatesWith: ['other.org'], allowMissingFederatedBundle: true });
  const api = new WorkloadApiClient({ address: stack.address, backoff: { initialMs: 50, maxMs: 500 } });
  t.teardown(() => api.close());
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  const contexts: X509Context[] = [];
  const x509Bundles: BundleSet[] = [];
  const jwtBundles: BundleSet[] = [];
  void api.watchX509Context({ onUpdate: (c) => contexts.push(c) }, stop.signal);
  void api.watchX509Bundles({ onUpdate: (b) => x509Bundles.push(b) }, stop.signal);
  void api.watchJwtBundles({ onUpdate: (b) => jwtBundles.push(b) }, stop.signal);
  await eventually(() => (contexts.length > 0 && x509Bundles.length > 0 && jwtBundles.length > 0 ? true : undefined), 15_000, 'first messages');
  t.false(contexts.at(-1)!.bundles.has(OTHER), 'no federated bundle before the operator sets one');
  t.true(contexts.at(-1)!.bundles.has(OWN));

  const doc = join(stack.server.dir, 'other.org.json');
  writeFileSync(doc, other.bundle().toJwks());
  const set = await runSigil(['bundle', 'set', '--socket', adminSocket, '--trust-domain', 'other.org', '--path', doc, '--format', 'spiffe']);
  t.is(set.code, 0, set.stderr);

  // Every open stream gets the new state without being reopened.
  const ctx = await eventually(() => contexts.find((c) => c.bundles.has(OTHER)), 10_000, 'federated bundle on FetchX509SVID');
  t.deepEqual([...ctx.bundles.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer()].map((d) => Buffer.from(d).toString('hex')), [Buffer.from(other.root.der).toString('hex')]);
  t.is(ctx.svids[0]?.id.toString(), 'spiffe://example.org/e2e/fed');
  const xb = await eventually(() => x509Bundles.find((b) => b.has(OTHER)), 10_000, 'federated bundle on FetchX509Bundles');
  t.true(xb.has(OWN));
  const jb = await eventually(() => jwtBundles.find((b) => b.has(OTHER)), 10_000, 'federated bundle on FetchJWTBundles');
  t.truthy(jb.getBundleForTrustDomain(OTHER)?.jwtAuthority(other.jwtKey.kid), 'the foreign JWT key is served');

  // A foreign JWT-SVID now validates through the agent's ValidateJWTSVID.
  const foreign = signJwt(other.jwtKey, jwtClaims('spiffe://other.org/caller', 'spiffe://example.org/e2e/fed'));
  const checked = await api.validateJwtSvid(foreign, 'spiffe://example.org/e2e/fed');
  t.is(checked.id.toString(), 'spiffe://other.org/caller');

  const before = { x: contexts.length, xb: x509Bundles.length, jb: jwtBundles.length };
  const del = await runSigil(['bundle', 'delete', '--socket', adminSocket, '--trust-domain', 'other.org']);
  t.is(del.code, 0, del.stderr);
  await eventually(() => (contexts.length > before.x && !contexts.at(-1)!.bundles.has(OTHER) ? true : undefined), 10_000, 'cleared on FetchX509SVID');
  await eventually(() => (x509Bundles.length > before.xb && !x509Bundles.at(-1)!.has(OTHER) ? true : undefined), 10_000, 'cleared on FetchX509Bundles');
  await eventually(() => (jwtBundles.length > before.jb && !jwtBundles.at(-1)!.has(OTHER) ? true : undefined), 10_000, 'cleared on FetchJWTBundles');
  t.true(contexts.at(-1)!.bundles.has(OWN));
  const refused = await t.throwsAsync(api.validateJwtSvid(foreign, 'spiffe://example.org/e2e/fed'));
  t.is((refused as { code?: string } | undefined)?.code, 'ERR_INVALID_JWT_SVID');
});

test.serial('a workload whose entries do not federate gets no federated bundle and no foreign JWT-SVID validates for it', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.close());
  const other = await TestTrustDomain.create('other.org');
  const doc = join(stack.server.dir, 'other.org.json');
  writeFileSync(doc, other.bundle().toJwks());
  const set = await runSigil(['bundle', 'set', '--socket', stack.server.server.adminSocketPath, '--trust-domain', 'other.org', '--path', doc, '--format', 'spiffe']);
  t.is(set.code, 0, set.stderr);
  await stack.entry({ spiffeId: 'spiffe://example.org/e2e/local' });
  const api = new WorkloadApiClient({ address: stack.address, backoff: { initialMs: 50, maxMs: 500 } });
  t.teardown(() => api.close());
  const ctx = await eventually(async () => {
    try {
      return await api.fetchX509Context(AbortSignal.timeout(2000));
    } catch {
      return undefined;
    }
  }, 15_000, 'an X509-SVID');
  t.false(ctx.bundles.has(OTHER));
  t.false((await api.fetchX509Bundles()).has(OTHER));
  t.false((await api.fetchJwtBundles()).has(OTHER));
  // Nor does the agent accept that domain's JWT-SVIDs on its behalf.
  const foreign = signJwt(other.jwtKey, jwtClaims('spiffe://other.org/caller', 'spiffe://example.org/e2e/local'));
  const refused = await t.throwsAsync(api.validateJwtSvid(foreign, 'spiffe://example.org/e2e/local'));
  t.is((refused as { code?: string } | undefined)?.code, 'ERR_INVALID_JWT_SVID');
});
