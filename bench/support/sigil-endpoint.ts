/**
 * The Sigil side of benchmarks 4 and 5: the real agent (startAgent: Workload API, unix
 * attestor over the real /proc and SO_PEERCRED, SVID cache fed by entry sync) attested to a
 * real server, both in this process (the server is idle while these are measured). One
 * entry matches this uid and federates with `partner.test`; changing that federated bundle
 * through the admin API is the bundle change benchmark 5 fans out.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SyncBatch } from '../../src/agent/entry-sync.js';
import { toPem } from '../../src/common/x509.js';
import { startInProcessAgent, type InProcessAgent } from './bench-agent.js';
import { startBenchServer, type BenchServer } from './bench-server.js';
import { BENCH_TRUST_DOMAIN, createBenchCa } from './ca.js';

const PARTNER = 'partner.test';

/** A running Workload API endpoint under benchmark. */
export interface SigilEndpoint {
  readonly address: string;
  /** What serves the identities, for the report. */
  readonly description: string;
  /** Open Workload API subscriptions in the agent's cache. */
  readonly subscribers: number;
  /**
   * Changes the federated bundle through the admin API; resolves with two process.hrtime
   * readings: when the change was asked for, and when the agent's cache received it.
   */
  pushBundleChange(): Promise<{ asked: bigint; atAgent: bigint }>;
  close(): Promise<void>;
}

/** The X.509 authorities of a fresh `partner.test` CA, as PEM. */
async function partnerPem(): Promise<string> {
  const partner = await createBenchCa({ trustDomain: PARTNER });
  try {
    return partner.ca.x509Authorities().map((c) => toPem(c, 'CERTIFICATE')).join('');
  } finally {
    await partner.close();
  }
}

/** Starts a server and the real agent with one entry for this uid. */
export async function startSigilEndpoint(): Promise<SigilEndpoint> {
  const partnerPems = await Promise.all([partnerPem(), partnerPem()]);
  let srv: BenchServer | undefined;
  let agent: InProcessAgent | undefined;
  try {
    srv = await startBenchServer();
    const s = srv;
    const setPartner = (i: number): Promise<unknown> =>
      s.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: PARTNER, document: Buffer.from(partnerPems[i % 2]!), format: 'pem', append: false });
    await setPartner(0);
    agent = await startInProcessAgent(srv);
    const uid = process.getuid?.() ?? 0;
    await srv.admin.call('Entries', 'BatchCreateEntry', {
      entries: [{ spiffe_id: `spiffe://${BENCH_TRUST_DOMAIN}/workload/bench`, parent_id: agent.agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }], federates_with: [`spiffe://${PARTNER}`] }],
    });
    const cache = agent.agent.cache;
    for (let i = 0; i < 500 && cache.stats().svids < 1; i++) await sleep(20);
    if (cache.stats().svids < 1) throw new Error('the agent did not cache the bench SVID within 10 s');
    // Instrumentation only: note when a batch carrying bundles reaches the cache.
    let onBundles: ((at: bigint) => void) | undefined;
    const apply = cache.applyBatch.bind(cache);
    (cache as { applyBatch: (b: SyncBatch) => void }).applyBatch = (b: SyncBatch) => {
      if (b.bundles !== undefined) onBundles?.(process.hrtime.bigint());
      apply(b);
    };
    let round = 0;
    const a = agent;
    return {
      address: a.address,
      description: 'the real agent (startAgent) with its SVID cached, server in the same process',
      get subscribers() {
        return cache.stats().subscribers;
      },
      async pushBundleChange() {
        const atAgent = new Promise<bigint>((resolve) => {
          onBundles = (at) => {
            onBundles = undefined;
            resolve(at);
          };
        });
        const asked = process.hrtime.bigint();
        await setPartner(++round);
        return { asked, atAgent: await atAgent };
      },
      async close() {
        await a.close();
        await s.close();
      },
    };
  } catch (err) {
    await agent?.close();
    await srv?.close();
    throw err;
  }
}
