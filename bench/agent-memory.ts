/**
 * Benchmark 8: the agent's memory per cached SVID. The real agent runs in a child process
 * (svidCache.maxSize raised so it mints every entry eagerly); its RSS after a full GC is
 * read once it has synced with no entries, then again once it holds 10k entries and their
 * 10k SVIDs (key pair + chain each). Growth / SVIDs is the first figure: it includes each
 * entry's own state, since an SVID is never cached without its entry.
 *
 * That growth also holds costs paid once, whatever the count: V8's young generation and JIT
 * code reaching their working size, the allocator's arenas after the first burst of minting
 * (the figure was 8.9, 6.5 and 5.0 KB at 5k, 10k and 20k SVIDs for the same code). So a
 * second 10k are added and their growth / 10k is the second figure, the cost of one more
 * cached SVID.
 *
 * Floor, measured alongside: a plain Node process (support/buffer-holder.ts) holding the
 * same number of copies of a real SVID's key and chain Buffers, its RSS read the same way;
 * its growth per item is what the bare bytes cost in Node. The targets stay absolute.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentServerClient } from '../src/agent/server-client.js';
import { Secret } from '../src/common/secret.js';
import { TrustDomain } from '../src/spiffe/spiffe-id.js';
import { startBenchServer, type BenchServer } from './support/bench-server.js';
import { AgentProcess, type AgentProcessStats } from './support/bench-agent.js';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import { benchEntry } from './support/entries.js';
import { BufferHolder } from './support/buffer-holder.js';
import { makeCsrs } from './support/csr.js';
import { bytes, median, type Benchmark, type BenchOutcome, type Metric } from './support/result.js';

const TARGET_BYTES = 3 * 1024;

/** One real workload SVID from the server (key PKCS#8 DER and chain DER), for the floor's copies. */
async function sampleSvid(srv: BenchServer): Promise<{ key: Buffer; chain: Buffer[] }> {
  const id = await srv.attestAgent();
  const [entry] = await srv.server.datastore.createEntries([benchEntry(`spiffe://${BENCH_TRUST_DOMAIN}/mem/sample`, id.spiffeId, ['unix:uid:19999'])]);
  const csr = makeCsrs(1)[0]!;
  const client = new AgentServerClient({ addresses: [srv.agentTarget], trustDomain: TrustDomain.parse(BENCH_TRUST_DOMAIN), roots: srv.server.x509Authorities() });
  try {
    client.setIdentity({ chainDer: id.chain, keyPkcs8Der: new Secret(id.keyPkcs8) });
    const [result] = await client.batchNewX509Svid([{ entryId: entry!.id, csrDer: csr.der }]);
    if (result?.svid === undefined) throw new Error(`sample SVID not signed: ${result?.error?.message ?? 'no result'}`);
    return { key: csr.pkcs8, chain: result.svid.cert_chain };
  } finally {
    client.close();
  }
}

/** A per-SVID floor cell. */
function floorCell(perItem: number): Metric {
  return { ...bytes(perItem), text: `${bytes(perItem).text} plain Node` };
}

/** Median RSS of a few readings after full GCs (RSS moves by pages; one reading is noisy). */
async function settledRss(agent: AgentProcess): Promise<{ rss: number; heapUsed: number; arrayBuffers: number; stats: AgentProcessStats }> {
  const rss: number[] = [];
  const heap: number[] = [];
  const ab: number[] = [];
  let stats: AgentProcessStats | undefined;
  for (let i = 0; i < 5; i++) {
    await sleep(200);
    stats = await agent.stats(true);
    rss.push(stats.rss);
    heap.push(stats.heapUsed);
    ab.push(stats.arrayBuffers);
  }
  return { rss: median(rss), heapUsed: median(heap), arrayBuffers: median(ab), stats: stats! };
}

const agentMemory: Benchmark = {
  id: 8,
  name: 'agent memory per cached SVID',
  async run(options, log): Promise<BenchOutcome> {
    const n = options.quick ? 1000 : 10_000;
    const createBatch = async (from: number, agentId: string): Promise<number> => {
      let created = 0;
      for (let first = from; first < from + n; first += 5000) {
        const batch = [];
        for (let i = first; i < Math.min(from + n, first + 5000); i++) batch.push(benchEntry(`spiffe://${BENCH_TRUST_DOMAIN}/mem/${i}`, agentId, [`unix:uid:${20_000 + i}`]));
        created += (await srv.server.datastore.createEntries(batch)).length;
      }
      return created;
    };
    const srv = await startBenchServer();
    let agent: AgentProcess | undefined;
    let holder: BufferHolder | undefined;
    try {
      const sample = await sampleSvid(srv);
      holder = await BufferHolder.start();
      const plain0 = await holder.rss();
      agent = await AgentProcess.start(srv, { svidCache: { maxSize: n * 2 } });
      for (let i = 0; i < 500 && !(await agent.stats()).synced; i++) await sleep(20);
      const before = await settledRss(agent);
      log(`agent synced with no entries: RSS ${(before.rss / 1048576).toFixed(1)} MB; plain Node process: ${(plain0.rss / 1048576).toFixed(1)} MB`);
      const created = await createBatch(0, agent.agentId);
      const t0 = Date.now();
      await agent.until({ entries: n, svids: n }, 240_000);
      log(`${n} SVIDs cached after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const after = await settledRss(agent);
      const perSvid = (after.rss - before.rss) / n;
      const heapPerSvid = (after.heapUsed - before.heapUsed) / n;
      const buffersPerSvid = (after.arrayBuffers - before.arrayBuffers) / n;
      log(`RSS ${(after.rss / 1048576).toFixed(1)} MB: ${(perSvid / 1024).toFixed(2)} KB per SVID (JS heap ${(heapPerSvid / 1024).toFixed(2)} KB, Buffers ${(buffersPerSvid / 1024).toFixed(2)} KB)`);
      const plain1 = await holder.hold(n, sample.key, sample.chain);
      const floorPer = (plain1.rss - plain0.rss) / n;
      log(`plain Node process holding ${plain1.held} key + chain copies: ${(floorPer / 1024).toFixed(2)} KB each`);
      const more = await createBatch(n, agent.agentId);
      await agent.until({ entries: 2 * n, svids: 2 * n }, 240_000);
      const after2 = await settledRss(agent);
      const perMore = (after2.rss - after.rss) / n;
      const heapPerMore = (after2.heapUsed - after.heapUsed) / n;
      const buffersPerMore = (after2.arrayBuffers - after.arrayBuffers) / n;
      log(`RSS ${(after2.rss / 1048576).toFixed(1)} MB with ${2 * n} SVIDs: ${(perMore / 1024).toFixed(2)} KB per SVID added (JS heap ${(heapPerMore / 1024).toFixed(2)} KB, Buffers ${(buffersPerMore / 1024).toFixed(2)} KB)`);
      const plain2 = await holder.hold(n, sample.key, sample.chain);
      const floorPerMore = (plain2.rss - plain1.rss) / n;
      log(`plain Node process from ${plain1.held} to ${plain2.held} copies: ${(floorPerMore / 1024).toFixed(2)} KB each`);
      const sampleBytes = sample.key.length + sample.chain.reduce((a, c) => a + c.length, 0);
      return {
        rows: [
          {
            bench: 8,
            what: `agent RSS per cached SVID, ${n.toLocaleString('en-US')} SVIDs`,
            figure: bytes(perSvid),
            floor: floorCell(floorPer),
            ratio: perSvid / floorPer,
            target: '<= 3 KB',
            met: perSvid <= TARGET_BYTES,
          },
          {
            bench: 8,
            what: `agent RSS per cached SVID added, ${n.toLocaleString('en-US')} -> ${(2 * n).toLocaleString('en-US')} SVIDs`,
            figure: bytes(perMore),
            floor: floorCell(floorPerMore),
            ratio: perMore / floorPerMore,
            target: '<= 3 KB',
            met: perMore <= TARGET_BYTES,
          },
        ],
        details: {
          svids: n,
          rssBefore: before.rss,
          rssAfter: after.rss,
          heapBefore: before.heapUsed,
          heapAfter: after.heapUsed,
          heapPerSvid,
          buffersPerSvid,
          entries: created + more,
          rssAfterDouble: after2.rss,
          heapAfterDouble: after2.heapUsed,
          heapPerSvidAdded: heapPerMore,
          buffersPerSvidAdded: buffersPerMore,
          floor: { sampleKeyBytes: sample.key.length, sampleChainBytes: sample.chain.map((c) => c.length), plainRss: [plain0.rss, plain1.rss, plain2.rss], perItem: floorPer, perItemAdded: floorPerMore },
        },
        notes: [
          `floor: a plain Node process holding ${n} then ${2 * n} copies of one real SVID's key + chain (${sampleBytes} bytes of DER in ${1 + sample.chain.length} Buffers, in one object each); idle, it had RSS ${(plain0.rss / 1048576).toFixed(1)} MB against the synced agent's ${(before.rss / 1048576).toFixed(1)} MB with no entries`,
          `per SVID: JS heap ${(heapPerSvid / 1024).toFixed(2)} KB, Buffers ${(buffersPerSvid / 1024).toFixed(2)} KB; the rest of the RSS growth is native (allocator pages, V8 young generation and code reaching working size)`,
          `per SVID added from ${n} to ${2 * n}: JS heap ${(heapPerMore / 1024).toFixed(2)} KB, Buffers ${(buffersPerMore / 1024).toFixed(2)} KB; the first row includes costs paid once whatever the count`,
        ],
      };
    } finally {
      holder?.stop();
      await agent?.stop();
      await srv.close();
    }
  },
};

export default agentMemory;
