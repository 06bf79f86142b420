/**
 * The whole path for end-to-end tests: a real server (test/helpers/server.ts, real time), a
 * real agent (in process, or `node bin/sigil.js agent run` as a child), and the services of
 * examples/client/ as separate processes. Every service runs under the test's own uid, so
 * each has one registration entry with selector `unix:uid:<uid>` and its own hint, and picks
 * its identity with SVID_HINT: robust as root and as any other user.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../../src/common/logger.js';
import { startAgent, type RunningAgent } from '../../../src/agent/agent.js';
import { agentConfigFor, eventually, writeBootstrapBundle } from '../../agent/support/agent-harness.js';
import { Daemon, SIGIL_BIN } from '../../agent/support/processes.js';
import { ROOT, ServiceProcess } from '../../client/service-process.js';
import { startTestServer, type TestEntrySpec, type TestServer, type TestServerOptions } from '../../helpers/server.js';

/** The test's uid, the one selector every service entry carries. */
export const UID = process.getuid?.() ?? 0;
/** `unix:uid:<uid>`. */
export const UID_SELECTOR = `unix:uid:${UID}`;

/** A server plus an agent, either in process or as a child. */
export interface Stack {
  readonly server: TestServer;
  /** The agent's SPIFFE ID (parent of the service entries). */
  readonly agentId: string;
  /** `unix:///…` of the agent's Workload API. */
  readonly address: string;
  /** The in-process agent, when there is one. */
  readonly agent: RunningAgent | undefined;
  /** Every line the agent logged (in process) or printed (child). */
  logs(): string;
  /** Secrets that must never show in any output (the join token). */
  readonly secrets: string[];
  /** Creates an entry under this agent with the uid selector (unless given others). */
  entry(spec: Omit<TestEntrySpec, 'parentId' | 'selectors'> & { readonly selectors?: readonly string[] }): Promise<string>;
  /** Starts `examples/client/<name>` against this agent. */
  run(name: string, env: Record<string, string>, stdin?: string): ServiceProcess;
  close(): Promise<void>;
}

/** Starts a real server and a real agent; `child` runs the agent as `node bin/sigil.js agent run`. */
export async function startStack(
  options: { readonly child?: boolean; readonly agentConfig?: Record<string, unknown>; readonly server?: Omit<TestServerOptions<never>, 'clock'> } = {},
): Promise<Stack> {
  const server = await startTestServer(options.server);
  const dir = mkdtempSync(join(tmpdir(), 'sigil-e2e-'));
  chmodSync(dir, 0o755);
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const token = await server.createJoinToken(600);
  const tokenFile = join(dir, 'join-token');
  writeFileSync(tokenFile, `${token.token.reveal()}\n`, { mode: 0o600 });
  const secrets = [token.token.reveal()];
  const children: ServiceProcess[] = [];
  let agent: RunningAgent | undefined;
  let daemon: Daemon | undefined;
  let logs: () => string;
  let socketPath: string;
  try {
    if (options.child === true) {
      socketPath = join(dir, 'agent.sock');
      writeFileSync(
        join(dir, 'agent.yaml'),
        `trustDomain: example.org\nserverAddress: ${server.agentTarget}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${socketPath}\nnodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\n`,
      );
      const d = new Daemon(process.execPath, [SIGIL_BIN, 'agent', 'run', '--config', join(dir, 'agent.yaml')]);
      daemon = d;
      logs = () => d.stdout + d.stderr;
      await eventually(() => (d.stderr.includes('serving the Workload API') ? true : undefined), 20_000, 'the agent child to start').catch((err: unknown) => {
        throw new Error(`${String(err)}: ${d.stderr.slice(-3000)}`);
      });
    } else {
      const config = agentConfigFor(server, dir, tokenFile, options.agentConfig);
      socketPath = config.socketPath;
      const { logger, lines } = memoryLogger('debug');
      logs = () => lines.join('\n');
      agent = await startAgent(config, { logger });
    }
  } catch (err) {
    await daemon?.stop();
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const address = `unix://${socketPath}`;
  return {
    server,
    agentId: token.agentId,
    address,
    agent,
    logs: () => logs(),
    secrets,
    entry: (spec) => server.createEntry({ ...spec, parentId: token.agentId, selectors: spec.selectors ?? [UID_SELECTOR] }),
    run(name, env, stdin) {
      const proc = spawn(process.execPath, [join(ROOT, 'examples/client', name)], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', SPIFFE_ENDPOINT_SOCKET: address, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      proc.stdin?.end(stdin ?? '');
      const p = new ServiceProcess(proc);
      children.push(p);
      return p;
    },
    async close() {
      await Promise.all(children.map((c) => c.stop()));
      await agent?.stop();
      await daemon?.stop();
      await server.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs an example to its end; returns its exit code and output. */
export async function runToEnd(stack: Stack, name: string, env: Record<string, string>, stdin?: string): Promise<{ code: number | null; out: string }> {
  const p = stack.run(name, env, stdin);
  const code = await p.exited;
  return { code, out: p.output };
}

/** Lines of output that would leak a secret: keys, JWTs, the join token. */
export function secretLeaks(text: string, secrets: readonly string[]): string[] {
  return text.split('\n').filter((l) => l.includes('PRIVATE KEY') || l.includes('eyJ') || secrets.some((s) => l.includes(s)));
}
