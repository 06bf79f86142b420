/**
 * Benchmark 10: N simulated agents attach to one server at once (issue 20). The server runs
 * alone in a child process (fleet-server-main.ts), the agents in child processes of their own
 * (fleet-agents-main.ts, several agents each, one TLS connection per agent), built on the
 * agent's server client: attest with a join token, mTLS, one SyncEntries stream, and
 * BatchNewX509SVID for their 20 entries.
 *
 * Reported: time from the start to every agent synced (all its SVIDs in hand); the server's
 * CPU time over that window per agent (utime + stime from /proc/<pid>/stat) against the raw
 * signature cost of the 21 SVIDs per agent (20 entries + the agent SVID: import the CSR key from
 * DER, verify the CSR, sign a TBS of a leaf's size, measured here in the same run); failed calls
 * (an error or a deadline passed) and, apart, calls shed (refused at once with UNAVAILABLE
 * `signing-overloaded` because the signing backlog would outlast their deadline: the load
 * shedding issue 20 asks for, retried with backoff as a real agent does); SVIDs signed but not delivered (the server's ok counter minus what agents received); and,
 * with all N connected, entry create -> that agent holding its SVID, p99. For context, the
 * transport floor (support/bare-fleet.ts): the same calls with Sigil's message sizes against a
 * bare grpc-js server doing no identity work; its CPU per agent plus the signature floor is
 * the least a Node server can spend per agent, and the context row divides by that.
 *
 * N: 300 by default (a couple of minutes on 2 shared cores), 5,000 with --full (the issue's
 * target), 20 with --quick, or any N with --agents=N.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import { makeCsrs } from './support/csr.js';
import { runBareFleet } from './support/bare-fleet.js';
import { processCpuSeconds } from './support/proc-cpu.js';
import type { FleetAgentsCommand, FleetAgentsReport } from './support/fleet-agents-main.js';
import type { FleetServerCommand, FleetServerReply } from './support/fleet-server-main.js';
import { millis, percentile, type Benchmark, type BenchOutcome } from './support/result.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRIES_PER_AGENT = 20;
/** SVIDs the server signs per agent: its entries and its own agent SVID. */
const SVIDS_PER_AGENT = ENTRIES_PER_AGENT + 1;
const AGENTS_PER_PROCESS = 100;
const LATE_ENTRIES = 40;
const CPU_TARGET = 1.5;
/**
 * The agents' processes run at this nice value. On a real fleet each agent has its own
 * machine; here 50 agent processes share 2 cores with the server under test, and at equal
 * priority the scheduler gave the server's 3 threads about 3/53 of the CPU during the attach
 * burst: its accept queue overflowed (the kernel drops SYNs, retried 1-31 s later) and agents'
 * own event loops starved, which is the load generator failing, not the server.
 */
const AGENT_NICE = 10;

/** The server child, with request/response over IPC (one request at a time). */
class ServerChild {
  readonly #child: ChildProcess;
  #waiting: ((r: FleetServerReply) => void) | undefined;
  constructor() {
    this.#child = fork(join(HERE, 'support', 'fleet-server-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#child.on('message', (m) => {
      const w = this.#waiting;
      this.#waiting = undefined;
      w?.(m as FleetServerReply);
    });
  }
  get pid(): number {
    return this.#child.pid as number;
  }
  next(): Promise<FleetServerReply> {
    return new Promise((resolve, reject) => {
      this.#waiting = (r) => (r.type === 'error' ? reject(new Error(`server: ${r.error}`)) : resolve(r));
    });
  }
  ask(cmd: FleetServerCommand): Promise<FleetServerReply> {
    const p = this.next();
    this.#child.send(cmd);
    return p;
  }
  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

/** CPU ms of the raw crypto for one SVID: CSR key from DER, CSR verify, one P-256 signature over a leaf-sized TBS. */
function signatureFloorMs(): number {
  const csrs = makeCsrs(500);
  const tbs = randomBytes(420);
  const caKey = { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, dsaEncoding: 'der' as const };
  const round = (): number => {
    const t0 = process.cpuUsage();
    for (const c of csrs) {
      const pub = createPublicKey({ key: c.spki, format: 'der', type: 'spki' });
      if (!verify('sha256', c.info, { key: pub, dsaEncoding: 'der' }, c.signature)) throw new Error('floor: CSR does not verify');
      sign('sha256', tbs, caKey);
    }
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / 1000 / csrs.length;
  };
  round();
  const rounds = Array.from({ length: 5 }, round).sort((a, b) => a - b);
  return rounds[2] as number;
}

const fleet: Benchmark = {
  id: 10,
  name: 'many agents attach to one server',
  async run(options, log): Promise<BenchOutcome> {
    const n = options.agents ?? (options.full ? 5000 : options.quick ? 20 : 300);
    const server = new ServerChild();
    const agentProcs: ChildProcess[] = [];
    let stopped = false;
    try {
      const ready = await server.next();
      if (ready.type !== 'ready') throw new Error(`server: unexpected ${ready.type}`);
      const made = await server.ask({ type: 'tokens', count: n, entriesPerAgent: ENTRIES_PER_AGENT });
      if (made.type !== 'tokens') throw new Error(`server: unexpected ${made.type}`);
      log(`${n} agents, ${ENTRIES_PER_AGENT} entries each, ${Math.ceil(n / AGENTS_PER_PROCESS)} agent processes`);

      const synced = new Map<string, number>();
      const lateSvids = new Map<string, number>();
      const failures: { call: string; error: string }[] = [];
      let shed = 0;
      let received = 0;
      let onProgress: () => void = () => undefined;
      const onReport = (r: FleetAgentsReport): void => {
        if (r.type === 'synced') {
          synced.set(r.agentId, r.atMs);
          received += r.svids;
        } else if (r.type === 'svid') {
          lateSvids.set(r.entryId, r.atMs);
          received += 1;
        } else if (r.type === 'failure') failures.push({ call: r.call, error: r.error });
        else if (r.type === 'shed') shed++;
        else failures.push({ call: 'agent process', error: r.error });
        onProgress();
      };
      const until = (what: string, cond: () => boolean, timeoutMs: number): Promise<void> =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
          onProgress = () => {
            if (!cond()) return;
            clearTimeout(timer);
            onProgress = () => undefined;
            resolve();
          };
          onProgress();
        });

      for (let i = 0; i < made.agents.length; i += AGENTS_PER_PROCESS) {
        const child = fork(join(HERE, 'support', 'fleet-agents-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        child.on('message', (m) => onReport(m as FleetAgentsReport));
        agentProcs.push(child);
        if (child.pid !== undefined) setPriority(child.pid, AGENT_NICE);
      }
      const cpu0 = processCpuSeconds(server.pid) * 1000;
      const t0 = Date.now();
      agentProcs.forEach((child, k) => {
        const agents = made.agents.slice(k * AGENTS_PER_PROCESS, (k + 1) * AGENTS_PER_PROCESS);
        const cmd: FleetAgentsCommand = { type: 'start', target: ready.target, roots: ready.roots, trustDomain: BENCH_TRUST_DOMAIN, agents, concurrency: agents.length };
        child.send(cmd);
      });
      let lastLog = Date.now();
      await until(
        'every agent synced',
        () => {
          if (Date.now() - lastLog > 5000) {
            lastLog = Date.now();
            log(`  ${synced.size}/${n} synced after ${((Date.now() - t0) / 1000).toFixed(1)} s, ${failures.length} failed calls`);
          }
          return synced.size >= n;
        },
        options.full ? 1_500_000 : 600_000,
      );
      const allSyncedMs = Math.max(...synced.values()) - t0;
      const serverCpuMs = processCpuSeconds(server.pid) * 1000 - cpu0;
      const attachFailures = failures.length;
      const attachShed = shed;
      log(`all ${n} synced in ${(allSyncedMs / 1000).toFixed(1)} s; server CPU ${(serverCpuMs / 1000).toFixed(1)} s; ${attachFailures} failed calls; ${attachShed} shed`);

      // with every agent connected: one entry at a time for spread-out agents, create -> SVID in the agent's hands
      const latencies: number[] = [];
      const late = Math.min(LATE_ENTRIES, n);
      for (let k = 0; k < late; k++) {
        const a = made.agents[Math.floor((k * n) / late)] as { agentId: string };
        const r = await server.ask({ type: 'entry', parentId: a.agentId, n: k });
        if (r.type !== 'entry') throw new Error(`server: unexpected ${r.type}`);
        await until(`the SVID of late entry ${k}`, () => lateSvids.has(r.entryId), 60_000);
        latencies.push((lateSvids.get(r.entryId) as number) - r.createdAtMs);
      }
      const p99 = percentile(latencies, 99);
      const p50 = percentile(latencies, 50);
      const stats = await server.ask({ type: 'stats' });
      if (stats.type !== 'stats') throw new Error(`server: unexpected ${stats.type}`);
      const undelivered = stats.x509Ok - received;
      const sampled = await server.ask({ type: 'samples', agentId: (made.agents[0] as { agentId: string }).agentId });
      if (sampled.type !== 'samples') throw new Error(`server: unexpected ${sampled.type}`);
      // the Sigil server and its agents leave the machine to the transport floor
      for (const c of agentProcs) c.kill('SIGKILL');
      await server.ask({ type: 'stop' }).catch(() => server.kill());
      stopped = true;
      // context only: a floor that fails leaves the measured rows standing
      const bare = await runBareFleet(n, sampled.samples, AGENTS_PER_PROCESS, AGENT_NICE, options.full ? 900_000 : 300_000).catch((err: unknown) => {
        log(`bare grpc-js floor failed: ${err instanceof Error ? err.message : String(err)}`);
        return undefined;
      });
      if (bare !== undefined) log(`bare grpc-js server, same calls and message sizes: ${bare.cpuPerAgentMs.toFixed(2)} ms CPU per agent (all done in ${(bare.allDoneMs / 1000).toFixed(1)} s)`);
      const floorMs = signatureFloorMs();
      const floorPerAgent = floorMs * SVIDS_PER_AGENT;
      const perAgent = serverCpuMs / n;
      log(`server CPU per agent ${perAgent.toFixed(2)} ms vs raw signatures ${floorPerAgent.toFixed(2)} ms (${SVIDS_PER_AGENT} x ${floorMs.toFixed(3)} ms); entry -> agent p50 ${p50} ms, p99 ${p99} ms`);
      const byCall = new Map<string, number>();
      for (const f of failures) byCall.set(f.call, (byCall.get(f.call) ?? 0) + 1);
      return {
        rows: [
          { bench: 10, what: `${n} agents x ${ENTRIES_PER_AGENT} entries: start -> all synced`, figure: millis(allSyncedMs), floor: null, ratio: null, target: '(absolute)', met: null },
          {
            bench: 10,
            what: `${n} agents: failed calls while attaching; SVIDs signed, not delivered (calls shed)`,
            figure: { value: attachFailures, unit: 'calls', text: `${attachFailures}; ${undelivered} (${attachShed} shed)` },
            floor: null,
            ratio: null,
            target: '0; 0',
            met: attachFailures === 0 && undelivered <= 0,
          },
          {
            bench: 10,
            what: `${n} agents: server CPU per agent`,
            figure: millis(perAgent),
            floor: millis(floorPerAgent, `${SVIDS_PER_AGENT} sigs`),
            ratio: perAgent / floorPerAgent,
            target: `<= ${CPU_TARGET}`,
            met: perAgent / floorPerAgent <= CPU_TARGET,
          },
          {
            bench: 10,
            what: `${n} agents: server CPU per agent against transport + signatures (context)`,
            figure: millis(perAgent),
            floor: bare === undefined ? null : millis(bare.cpuPerAgentMs + floorPerAgent, 'bare gRPC + sigs'),
            ratio: bare === undefined ? null : perAgent / (bare.cpuPerAgentMs + floorPerAgent),
            target: '(context)',
            met: null,
          },
          { bench: 10, what: `entry create -> agent has SVID, all ${n} connected, p99`, figure: millis(p99), floor: null, ratio: null, target: '(absolute)', met: null },
        ],
        details: {
          agents: n,
          entriesPerAgent: ENTRIES_PER_AGENT,
          agentProcesses: agentProcs.length,
          agentNice: AGENT_NICE,
          allSyncedMs,
          serverCpuMs,
          serverCpuPerAgentMs: perAgent,
          signatureFloorMsPerSvid: floorMs,
          bareTransportCpuPerAgentMs: bare?.cpuPerAgentMs ?? null,
          bareTransportAllDoneMs: bare?.allDoneMs ?? null,
          failedCalls: attachFailures,
          shedCalls: attachShed,
          failedByCall: Object.fromEntries(byCall),
          firstFailures: failures.slice(0, 5),
          svidsSignedOk: stats.x509Ok,
          svidsReceived: received,
          agentSvids: stats.agentOk,
          lateEntryLatenciesMs: latencies,
          lateEntryP50Ms: p50,
        },
        notes: [
          `${n} agents in ${agentProcs.length} processes (${AGENTS_PER_PROCESS} each, one TLS connection per agent, nice ${AGENT_NICE}) on the same machine as the server: the agents' own CPU competes with it`,
          ...(options.full || options.agents !== undefined ? [] : ['default N is reduced (the issue targets 5,000: --full or --agents=N)']),
        ],
      };
    } finally {
      for (const c of agentProcs) c.kill('SIGKILL');
      if (!stopped) {
        try {
          await server.ask({ type: 'stop' });
        } catch {
          server.kill();
        }
      }
    }
  },
};

export default fleet;
