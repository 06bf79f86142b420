/**
 * Benchmark 10's transport floor: the same number of agents making the same calls (a TLS
 * connection with one AttestAgent exchange, then mutual TLS with SyncEntries and one
 * BatchNewX509SVID of their entries) against a bare grpc-js server answering with samples of
 * Sigil's own messages (bare-fleet-server-main.ts), agents at the same nice value and as many
 * per process. Its server CPU per agent is what Node's TLS, HTTP/2 and grpc-js cost for an
 * agent's attach with no identity work at all: with the signature floor it is the least a
 * Node server can spend per agent.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processCpuSeconds } from './proc-cpu.js';
import type { BareFleetAgentsCommand, BareFleetAgentsReport, BareFleetServerCommand, BareFleetServerReply, FleetSamples } from './bare-fleet-wire.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** What the floor measured. */
export interface BareFleetResult {
  readonly cpuPerAgentMs: number;
  readonly allDoneMs: number;
}

/** Runs `n` bare agents, `perProcess` to a process at `nice`, against a bare server; bounded by `timeoutMs`. */
export async function runBareFleet(n: number, samples: FleetSamples, perProcess: number, nice: number, timeoutMs: number): Promise<BareFleetResult> {
  const server = fork(join(HERE, 'bare-fleet-server-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const agents: ChildProcess[] = [];
  try {
    const listening = await new Promise<Extract<BareFleetServerReply, { type: 'listening' }>>((resolve, reject) => {
      server.once('message', (m: BareFleetServerReply) => (m.type === 'listening' ? resolve(m) : reject(new Error(`bare server: ${m.error}`))));
      server.once('exit', (code) => reject(new Error(`bare server exited with ${code}`)));
      const cmd: BareFleetServerCommand = { type: 'serve', samples };
      server.send(cmd);
    });
    const pid = server.pid as number;
    const entryIds = samples.entries.map((e) => String(e['id']));
    let done = 0;
    let resolveAll: () => void = () => undefined;
    let rejectAll: (err: Error) => void = () => undefined;
    const all = new Promise<void>((resolve, reject) => {
      resolveAll = resolve;
      rejectAll = reject;
    });
    const timer = setTimeout(() => rejectAll(new Error(`bare fleet: ${done} of ${agents.length} agent processes done within ${timeoutMs} ms`)), timeoutMs);
    for (let i = 0; i < n; i += perProcess) {
      const child = fork(join(HERE, 'bare-fleet-agents-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      if (child.pid !== undefined) setPriority(child.pid, nice);
      child.on('message', (m: BareFleetAgentsReport) => {
        if (m.type === 'error') rejectAll(new Error(`bare agents: ${m.error}`));
        else if (++done === agents.length) resolveAll();
      });
      agents.push(child);
    }
    // the bare server's CPU from the first agent's start: the agents' own start-up is theirs
    const cpu0 = processCpuSeconds(pid);
    const t0 = Date.now();
    agents.forEach((child, k) => {
      const cmd: BareFleetAgentsCommand = {
        type: 'start',
        tlsTarget: listening.tlsTarget,
        mtlsTarget: listening.mtlsTarget,
        tls: listening.tls,
        agents: Math.min(perProcess, n - k * perProcess),
        entryIds,
        csr: samples.csr,
      };
      child.send(cmd);
    });
    try {
      await all;
    } finally {
      clearTimeout(timer);
    }
    return { cpuPerAgentMs: ((processCpuSeconds(pid) - cpu0) * 1000) / n, allDoneMs: Date.now() - t0 };
  } finally {
    for (const a of agents) a.kill('SIGKILL');
    server.kill('SIGKILL');
  }
}
