/**
 * Benchmark 6: `entry create` -> a waiting workload receives its SVID, p50/p99 over 100
 * entries. Per entry: a workload process running as a uid of its own (so only its entry
 * matches it) keeps asking the real agent's Workload API and is denied; then the entry is
 * created through the admin API (what `sigil entry create` calls) and the time runs until
 * that workload holds an X509SVIDResponse: server push to the agent, agent key + CSR,
 * BatchNewX509SVID, Workload API. Server in this process, agent in its own, workloads in theirs.
 * The rows are absolute: no bare program does this chain of work, so there is no floor.
 */
import { startBenchServer } from './support/bench-server.js';
import { AgentProcess } from './support/bench-agent.js';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import { ABSOLUTE, millis, percentile, type Benchmark, type BenchOutcome } from './support/result.js';
import { RETRY_MS } from './support/waiting-workload-main.js';
import { waitingWorkloadLatency } from './support/waiting-workload.js';

const P99_TARGET_MS = 500;
const FIRST_UID = 41_000;

const propagation: Benchmark = {
  id: 6,
  name: 'entry create -> waiting workload',
  async run(options, log): Promise<BenchOutcome> {
    const n = options.quick ? 10 : 100;
    const srv = await startBenchServer();
    let agent: AgentProcess | undefined;
    try {
      agent = await AgentProcess.start(srv);
      const samples: number[] = [];
      for (let i = 0; i < n; i++) {
        const uid = FIRST_UID + i;
        const a = agent;
        samples.push(
          await waitingWorkloadLatency(a.address, uid, async () => {
            await srv.admin.call('Entries', 'BatchCreateEntry', {
              entries: [{ spiffe_id: `spiffe://${BENCH_TRUST_DOMAIN}/waiting/${i}`, parent_id: a.agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] }],
            });
          }),
        );
        if ((i + 1) % 10 === 0) log(`${i + 1}/${n}: p50 ${percentile(samples, 50).toFixed(0)} ms, max ${Math.max(...samples).toFixed(0)} ms`);
      }
      const p50 = percentile(samples, 50);
      const p99 = percentile(samples, 99);
      return {
        rows: [
          { bench: 6, what: `entry create -> waiting workload has SVID, p50 (${n} entries)`, figure: millis(p50), floor: ABSOLUTE, ratio: null, target: '(no target)', met: null },
          { bench: 6, what: `entry create -> waiting workload has SVID, p99 (${n} entries)`, figure: millis(p99), floor: ABSOLUTE, ratio: null, target: `<= ${P99_TARGET_MS} ms`, met: p99 <= P99_TARGET_MS },
        ],
        details: { entries: n, samplesMs: samples, retryMs: RETRY_MS },
        notes: [`the waiting workload re-asks every ${RETRY_MS} ms after PermissionDenied, so up to ${RETRY_MS} ms of each figure is its polling; a client with go-spiffe-style backoff (1 s doubling) adds that backoff on top`],
      };
    } finally {
      await agent?.stop();
      await srv.close();
    }
  },
};

export default propagation;
