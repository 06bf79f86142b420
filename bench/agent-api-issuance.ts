/**
 * Benchmark 2: X.509-SVID issuance through the server's agent API against cfssl's `serve`
 * sign endpoint on the same machine, in the same run, with the same CSRs.
 *
 * Headline, like for like: one certificate per request (BatchNewX509SVID with one CSR over
 * gRPC/TLS with a real attested agent's mTLS identity; cfssl's HTTPS /api/v1/cfssl/sign),
 * the same number of requests in flight and the same number of connections on both sides
 * (one request in flight per connection). What is measured is the whole server process as
 * `sigil server run` runs it — the gRPC edge on the main thread and the CSR checks and
 * signatures on its pool of one signing thread per core — against the whole cfssl process
 * (Go, all cores). Both share the machine's cores with the load generator (a child process).
 *
 * Second row: the server process's CPU time per certificate (utime + stime of every thread,
 * from /proc/<pid>/stat, over the measured runs), Sigil against cfssl: the figure both can
 * be judged on whatever the machine's contention. Extra row, labelled: batches of 50 CSRs
 * per call, which cfssl has no counterpart for. Without cfssl no ratio is printed.
 */
import { startBenchServer } from './support/bench-server.js';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import { cfsslMissing, startCfssl, type Cfssl } from './support/cfssl.js';
import { benchEntry } from './support/entries.js';
import { IssuanceLoad, type LoadResult } from './support/issuance-load.js';
import { processCpuSeconds } from './support/proc-cpu.js';
import { cpuMicros, median, rate, type Benchmark, type BenchOutcome, type BenchRow, type Metric, type NoFloor } from './support/result.js';

/** Throughput target: times cfssl's certificates per second. */
const TARGET = 2;
/** The same target in CPU terms: at most this share of cfssl's CPU time per certificate. */
const CPU_TARGET = 1 / TARGET;
const INFLIGHT_CSRS = 100;
/** One request in flight per connection, as cfssl's HTTP/1.1 keep-alive connections allow. */
const CONNECTIONS = INFLIGHT_CSRS;
const BATCH = 50;
const ENTRIES = 50;

/** Certificates per second and CPU seconds of the server process over one run. */
interface Run {
  readonly perSecond: number;
  readonly issued: number;
  readonly cpuSeconds: number;
}

async function measured(pid: number, go: () => Promise<LoadResult>): Promise<Run> {
  const cpu0 = processCpuSeconds(pid);
  const r = await go();
  const cpuSeconds = processCpuSeconds(pid) - cpu0;
  if (r.errors > 0) throw new Error(`${r.errors} of ${r.issued + r.errors} CSRs failed: ${r.firstError ?? ''}`);
  return { perSecond: r.issued / r.seconds, issued: r.issued, cpuSeconds };
}

/** Microseconds of server CPU per certificate over all runs. */
function cpuPerCert(runs: readonly Run[]): number {
  const issued = runs.reduce((a, r) => a + r.issued, 0);
  return (runs.reduce((a, r) => a + r.cpuSeconds, 0) / issued) * 1e6;
}

const agentApiIssuance: Benchmark = {
  id: 2,
  name: 'X.509-SVID issuance over TLS vs cfssl serve',
  async run(options, log): Promise<BenchOutcome> {
    const total = options.quick ? 500 : 3000;
    const rounds = options.quick ? 2 : 5;
    const notes: string[] = [];
    const missing = cfsslMissing();
    let cfssl: Cfssl | undefined;
    if (missing === undefined) cfssl = await startCfssl();
    else {
      log(`cfssl unavailable: ${missing}; no ratio will be printed`);
      notes.push(`cfssl unavailable (${missing}): no floor and no ratio; run bench/setup.sh`);
    }
    const srv = await startBenchServer();
    let load: IssuanceLoad | undefined;
    try {
      const agent = await srv.attestAgent();
      const created = await srv.server.datastore.createEntries(
        Array.from({ length: ENTRIES }, (_, i) => benchEntry(`spiffe://${BENCH_TRUST_DOMAIN}/workload/${i}`, agent.spiffeId, [`unix:uid:${1000 + i}`])),
      );
      load = await IssuanceLoad.start({
        csrCount: 1000,
        sigil: {
          target: srv.agentTarget,
          rootsDer: srv.server.x509Authorities(),
          trustDomain: BENCH_TRUST_DOMAIN,
          chainDer: agent.chain,
          keyPem: agent.keyPem,
          entryIds: created.map((e) => e.id),
        },
        ...(cfssl === undefined ? {} : { cfssl: { url: cfssl.url, tlsCertPem: cfssl.tlsCertPem } }),
      });
      const l = load;
      const self = process.pid;
      const one = (): Promise<Run> => measured(self, () => l.sigil(1, INFLIGHT_CSRS, CONNECTIONS, total));
      const batched = (): Promise<Run> => measured(self, () => l.sigil(BATCH, INFLIGHT_CSRS, INFLIGHT_CSRS / BATCH, total));
      const c = cfssl;
      const other = c === undefined ? undefined : (): Promise<Run> => measured(c.pid, () => l.cfssl(INFLIGHT_CSRS, CONNECTIONS, total));
      // Warm-up: JIT, every connection's TLS handshake, cfssl's Go runtime.
      await one();
      await batched();
      if (other !== undefined) await other();
      const ones: Run[] = [];
      const batches: Run[] = [];
      const cfsslRuns: Run[] = [];
      for (let r = 1; r <= rounds; r++) {
        if (other !== undefined) cfsslRuns.push(await other());
        ones.push(await one());
        batches.push(await batched());
        const cf = cfsslRuns.at(-1);
        log(
          `round ${r}/${rounds}: 1 per request ${Math.round(ones.at(-1)!.perSecond)}/s, batch ${BATCH} ${Math.round(batches.at(-1)!.perSecond)}/s` +
            (cf === undefined ? '' : `, cfssl ${Math.round(cf.perSecond)}/s`),
        );
      }
      const noCfssl: NoFloor = { none: 'cfssl not installed' };
      const cfsslRate = cfsslRuns.length === 0 ? undefined : median(cfsslRuns.map((r) => r.perSecond));
      const cfsslCpu = cfsslRuns.length === 0 ? undefined : cpuPerCert(cfsslRuns);
      const rateFloor: Metric | NoFloor = cfsslRate === undefined ? noCfssl : { ...rate(cfsslRate), text: `${rate(cfsslRate).text} cfssl` };
      const oneRate = median(ones.map((r) => r.perSecond));
      const batchRate = median(batches.map((r) => r.perSecond));
      const oneCpu = cpuPerCert(ones);
      const batchCpu = cpuPerCert(batches);
      const rows: BenchRow[] = [
        {
          bench: 2,
          what: `X.509-SVID over TLS, 1 per request, ${INFLIGHT_CSRS} in flight on ${CONNECTIONS} connections (both)`,
          figure: rate(oneRate),
          floor: rateFloor,
          ratio: cfsslRate === undefined ? null : oneRate / cfsslRate,
          target: `>= ${TARGET} (x cfssl)`,
          met: cfsslRate === undefined ? null : oneRate / cfsslRate >= TARGET,
        },
        {
          bench: 2,
          what: 'server process CPU per certificate, 1 per request (/proc utime+stime)',
          figure: cpuMicros(oneCpu),
          floor: cfsslCpu === undefined ? noCfssl : { ...cpuMicros(cfsslCpu), text: `${cpuMicros(cfsslCpu).text} cfssl` },
          ratio: cfsslCpu === undefined ? null : oneCpu / cfsslCpu,
          target: `<= ${CPU_TARGET} (x cfssl)`,
          met: cfsslCpu === undefined ? null : oneCpu / cfsslCpu <= CPU_TARGET,
        },
        {
          bench: 2,
          what: `extra: BatchNewX509SVID, ${BATCH} CSRs per call, ${INFLIGHT_CSRS / BATCH} calls on ${INFLIGHT_CSRS / BATCH} connections (cfssl: 1 per request)`,
          figure: rate(batchRate),
          floor: rateFloor,
          ratio: cfsslRate === undefined ? null : batchRate / cfsslRate,
          target: '(extra, no target)',
          met: null,
        },
      ];
      notes.push(
        `headline: one CSR per request on both sides, ${INFLIGHT_CSRS} requests in flight over ${CONNECTIONS} connections (Sigil: one HTTP/2 connection per gRPC client; cfssl: HTTP/1.1 keep-alive), median of ${rounds} rounds of ${total}`,
        `CPU per certificate is the server process's utime+stime over all ${rounds} measured rounds / certificates issued; Sigil's process is the benchmark process (its own work between runs is idle IPC); batch ${BATCH}: ${cpuMicros(batchCpu).text} per certificate`,
        `the ${TARGET}x throughput target read as CPU: at most ${CPU_TARGET} of cfssl's CPU time per certificate`,
      );
      return {
        rows,
        details: {
          total,
          rounds,
          inflightCsrs: INFLIGHT_CSRS,
          connections: CONNECTIONS,
          onePerRequest: ones,
          batch50: batches,
          cfssl: cfsslRuns,
          cpuMicrosPerCert: { onePerRequest: oneCpu, batch50: batchCpu, cfssl: cfsslCpu ?? null },
          floorKind: cfssl !== undefined ? `cfssl serve (${cfssl.version})` : 'none (cfssl not installed)',
        },
        notes,
      };
    } finally {
      load?.stop();
      cfssl?.close();
      await srv.close();
    }
  },
};

export default agentApiIssuance;
