/**
 * The real Sigil agent (src/agent startAgent) for the benchmarks, attested to a BenchServer
 * with a join token: in this process (benchmarks 4 and 5, where the server is idle during
 * the measurement) or in a child process of its own (6, 7, 8: its own core, its own RSS).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent, type RunningAgent } from '../../src/agent/agent.js';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { silentLogger } from '../../src/common/logger.js';
import { toPem } from '../../src/common/x509.js';
import type { Secret } from '../../src/common/secret.js';
import type { BenchServer } from './bench-server.js';
import { BENCH_TRUST_DOMAIN } from './ca.js';

/** What an agent needs of its server: a join token, the agent API target, the bootstrap roots (a BenchServer, or one in another process). */
export interface AgentHost {
  readonly agentTarget: string;
  joinToken(): Promise<{ token: Secret<string>; agentId: string }>;
  readonly server: { x509Authorities(): readonly Uint8Array[] };
}

/** A raw agent config (YAML-shaped) and the agent ID its join token gives. */
export interface PreparedAgent {
  readonly raw: Record<string, unknown>;
  readonly agentId: string;
  readonly dir: string;
  readonly socketPath: string;
}

/** Writes the bootstrap bundle and a 0600 join-token file in a fresh dir and builds the agent's config. */
export async function prepareAgent(srv: AgentHost, extra: Record<string, unknown> = {}): Promise<PreparedAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-agent-'));
  chmodSync(dir, 0o755); // workloads running as other uids must reach the socket
  mkdirSync(join(dir, 'run'), { mode: 0o755 });
  const { token, agentId } = await srv.joinToken();
  const tokenFile = join(dir, 'join-token');
  writeFileSync(tokenFile, `${token.reveal()}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'bootstrap.pem'), srv.server.x509Authorities().map((c) => toPem(c, 'CERTIFICATE')).join(''));
  const socketPath = join(dir, 'run', 'agent.sock');
  const raw = {
    trustDomain: BENCH_TRUST_DOMAIN,
    serverAddress: srv.agentTarget,
    trustBundleFile: join(dir, 'bootstrap.pem'),
    dataDir: join(dir, 'data'),
    socketPath,
    logLevel: 'warn',
    nodeAttestor: { joinToken: { tokenFile } },
    sync: { retryInitial: '100ms', retryMax: '1s' },
    ...extra,
  };
  return { raw, agentId, dir, socketPath };
}

/** An agent running in this process. */
export interface InProcessAgent {
  readonly agent: RunningAgent;
  readonly agentId: string;
  readonly address: string;
  close(): Promise<void>;
}

/** Starts the agent in this process. */
export async function startInProcessAgent(srv: BenchServer, extra: Record<string, unknown> = {}): Promise<InProcessAgent> {
  const p = await prepareAgent(srv, extra);
  const agent = await startAgent(resolveAgentConfig(p.raw), { logger: silentLogger() });
  return {
    agent,
    agentId: p.agentId,
    address: agent.address,
    async close() {
      await agent.stop();
      rmSync(p.dir, { recursive: true, force: true });
    },
  };
}

/** What the agent child reports. */
export interface AgentProcessStats {
  readonly entries: number;
  readonly svids: number;
  readonly subscribers: number;
  readonly synced: boolean;
  readonly rss: number;
  readonly heapUsed: number;
  /** Memory of Buffers and ArrayBuffers outside the JS heap. */
  readonly arrayBuffers: number;
  /** process.hrtime.bigint() in the child when the stats were taken (one clock for all processes). */
  readonly at: string;
}

/** Messages between the parent and agent-main. */
export type AgentCommand =
  | { readonly type: 'start'; readonly raw: Record<string, unknown> }
  | { readonly type: 'stats'; readonly gc?: boolean }
  | { readonly type: 'until'; readonly entries?: number; readonly svids?: number; readonly timeoutMs: number }
  | { readonly type: 'stop' };

/** Replies from agent-main. */
export type AgentReply =
  | { readonly type: 'started'; readonly address: string }
  | ({ readonly type: 'stats' } & AgentProcessStats)
  | { readonly type: 'error'; readonly error: string }
  | { readonly type: 'stopped' };

const HERE = dirname(fileURLToPath(import.meta.url));

/** The real agent in a child process of its own. */
export class AgentProcess {
  readonly #child: ChildProcess;
  readonly #prepared: PreparedAgent;
  address = '';

  private constructor(child: ChildProcess, prepared: PreparedAgent) {
    this.#child = child;
    this.#prepared = prepared;
  }

  /** Forks the child (with --expose-gc, for clean RSS readings), loaded but with no agent yet. */
  static async spawn(srv: AgentHost, extra: Record<string, unknown> = {}): Promise<AgentProcess> {
    const prepared = await prepareAgent(srv, extra);
    const child = fork(join(HERE, 'agent-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, '--expose-gc'] });
    const p = new AgentProcess(child, prepared);
    await p.stats(); // the child has loaded every module
    return p;
  }

  /** Starts the agent (attestation, sync, Workload API); returns the hrtime just before asking. */
  async begin(): Promise<bigint> {
    const t0 = process.hrtime.bigint();
    const r = await this.#ask({ type: 'start', raw: this.#prepared.raw });
    if (r.type === 'started') this.address = r.address;
    return t0;
  }

  /** spawn() then begin(). */
  static async start(srv: AgentHost, extra: Record<string, unknown> = {}): Promise<AgentProcess> {
    const p = await AgentProcess.spawn(srv, extra);
    await p.begin();
    return p;
  }

  get agentId(): string {
    return this.#prepared.agentId;
  }

  get socketPath(): string {
    return this.#prepared.socketPath;
  }

  #ask(cmd: AgentCommand, timeoutMs = 600_000): Promise<AgentReply> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        cleanup();
        reject(new Error(`agent process: no answer to ${cmd.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (m: unknown): void => {
        cleanup();
        const r = m as AgentReply;
        if (r.type === 'error') reject(new Error(r.error));
        else resolve(r);
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`agent process exited with ${code}`));
      };
      const cleanup = (): void => {
        clearTimeout(t);
        this.#child.off('message', onMessage);
        this.#child.off('exit', onExit);
      };
      this.#child.on('message', onMessage);
      this.#child.on('exit', onExit);
      this.#child.send(cmd);
    });
  }

  /** Cache counts and memory now (after a full GC when `gc`). */
  async stats(gc = false): Promise<AgentProcessStats> {
    return (await this.#ask({ type: 'stats', gc })) as AgentProcessStats;
  }

  /** Resolves with the stats at the first moment the cache holds at least these counts (polled every 2 ms in the child). */
  async until(want: { entries?: number; svids?: number }, timeoutMs: number): Promise<AgentProcessStats> {
    return (await this.#ask({ type: 'until', ...want, timeoutMs }, timeoutMs + 5000)) as AgentProcessStats;
  }

  /** Stops the agent and the child, and removes its dir. */
  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => (this.#child.exitCode !== null ? resolve() : this.#child.once('exit', () => resolve())));
    try {
      await this.#ask({ type: 'stop' }, 15_000);
      // Let it exit by itself (a --cpu-prof profile is written at exit), then make sure.
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      // already gone
    }
    this.#child.kill('SIGKILL');
    rmSync(this.#prepared.dir, { recursive: true, force: true });
  }
}
