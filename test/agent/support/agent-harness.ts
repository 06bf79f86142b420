/**
 * Runs a real agent in process against a real in-process server (test/helpers/server.ts):
 * temp dirs, a bootstrap bundle file, a join token in a 0600 file, a Unix socket reachable by
 * `nobody`; captured logs are scanned for secrets at teardown.
 */
import type { ExecutionContext } from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../../src/common/clock.js';
import { memoryLogger } from '../../../src/common/logger.js';
import { toPem } from '../../../src/common/x509.js';
import { startAgent, type RunningAgent } from '../../../src/agent/agent.js';
import { resolveAgentConfig, type AgentConfig } from '../../../src/agent/config.js';
import type { HostLookup } from '../../../src/agent/server-client.js';
import type { TestServer } from '../../helpers/server.js';

/** An agent started for a test. */
export interface TestAgent {
  readonly agent: RunningAgent;
  readonly config: AgentConfig;
  readonly dir: string;
  readonly socketPath: string;
  readonly tokenFile: string;
  readonly agentId: string;
  readonly lines: string[];
  /** Secrets that must never show in logs (the join token). */
  readonly secrets: string[];
  stop(): Promise<void>;
}

/** Options of startTestAgent. */
export interface TestAgentOptions {
  readonly clock?: Clock;
  readonly random?: () => number;
  /** Wait between checks while banned (StartAgentOptions.bannedRetryMs). */
  readonly bannedRetryMs?: number;
  /** Raw config merged over the defaults. */
  readonly config?: Record<string, unknown>;
  /** Reuse a directory (restart with the same data dir and token file). */
  readonly dir?: string;
  /** The bootstrap bundle's certificates (default: the server's own X.509 authorities). */
  readonly bootstrapRoots?: readonly Uint8Array[];
  /** Resolves DNS names among the server addresses (StartAgentOptions.lookup). */
  readonly lookup?: HostLookup;
  /** Use this agent ID and token file instead of creating a token. */
  readonly reuse?: { readonly agentId: string; readonly tokenFile: string; readonly secrets: string[] };
}

/** Writes the server's current X.509 authorities as a bootstrap bundle file. */
export function writeBootstrapBundle(server: TestServer, path: string): void {
  writeFileSync(path, server.server.x509Authorities().map((c) => toPem(c, 'CERTIFICATE')).join(''));
}

/** Builds an agent config for `server` in `dir` (join token attestation). */
export function agentConfigFor(server: TestServer, dir: string, tokenFile: string, extra: Record<string, unknown> = {}): AgentConfig {
  return resolveAgentConfig({
    trustDomain: 'example.org',
    serverAddress: server.agentTarget,
    trustBundleFile: join(dir, 'bootstrap.pem'),
    dataDir: join(dir, 'data'),
    socketPath: join(dir, 'run', 'agent.sock'),
    logLevel: 'debug',
    nodeAttestor: { joinToken: { tokenFile } },
    sync: { retryInitial: '100ms', retryMax: '1s' },
    ...extra,
  });
}

/** Creates a join token and starts an agent with it; stopped and scanned at teardown. */
export async function startTestAgent(t: ExecutionContext, server: TestServer, options: TestAgentOptions = {}): Promise<TestAgent> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sigil-agent-'));
  chmodSync(dir, 0o755); // workloads running as nobody must reach the socket
  if (options.bootstrapRoots === undefined) writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  else writeFileSync(join(dir, 'bootstrap.pem'), options.bootstrapRoots.map((c) => toPem(c, 'CERTIFICATE')).join(''));
  let agentId: string;
  let tokenFile: string;
  let secrets: string[];
  if (options.reuse !== undefined) {
    ({ agentId, tokenFile, secrets } = options.reuse);
  } else {
    const token = await server.createJoinToken(600);
    tokenFile = join(dir, 'join-token');
    writeFileSync(tokenFile, `${token.token.reveal()}\n`, { mode: 0o600 });
    agentId = token.agentId;
    secrets = [token.token.reveal()];
  }
  const config = agentConfigFor(server, dir, tokenFile, options.config);
  const { logger, lines } = memoryLogger('debug');
  const agent = await startAgent(config, { logger, ...(options.clock ? { clock: options.clock } : {}), ...(options.random ? { random: options.random } : {}), ...(options.bannedRetryMs === undefined ? {} : { bannedRetryMs: options.bannedRetryMs }), ...(options.lookup === undefined ? {} : { lookup: options.lookup }) });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await agent.stop();
  };
  t.teardown(async () => {
    await stop();
    for (const line of lines) {
      if (line.includes('PRIVATE KEY') || line.includes('eyJ') || secrets.some((s) => line.includes(s))) t.fail(`secret in agent log line: ${line.slice(0, 200)}`);
    }
    if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });
  });
  return { agent, config, dir, socketPath: config.socketPath, tokenFile, agentId, lines, secrets, stop };
}

/** Polls `check` every 20 ms of real time until it returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts an agent whose node attestation the server must refuse, waits until the server's
 * audit log names `reason`, then stops the attempt; resolves with the agent's log lines.
 */
export async function refusedAttestation(server: TestServer, config: AgentConfig, reason: string): Promise<string[]> {
  const { logger, lines } = memoryLogger('debug');
  const ctl = new AbortController();
  const attempt = startAgent(config, { logger }, ctl.signal);
  attempt.catch(() => undefined);
  try {
    await eventually(() => (server.auditLines.some((l) => l.includes(reason)) ? true : undefined), 20_000, `an audit line with ${reason}`);
  } finally {
    ctl.abort();
    await attempt.then((a) => a.stop()).catch(() => undefined);
  }
  return lines;
}
