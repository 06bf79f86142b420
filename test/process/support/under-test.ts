/**
 * The `sigil` under test, started the way a supervisor (systemd, Kubernetes) starts it: a real
 * `node bin/sigil.js …` child with a plain environment, watched from outside for what a
 * supervisor sees — still running, its exit code or signal, the files it leaves.
 *
 * SIGIL_TEST_BIN names another build's `bin/sigil.js` to test instead of this checkout's (e.g.
 * an older commit's worktree, to show that these tests fail there); client programs then load
 * `sigil/client` from that build too.
 */
import { mkdtempSync, chmodSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Daemon, runCommand, SIGIL_BIN, type RunResult } from '../../agent/support/processes.js';
import { makeServerDir, writeServerConfig } from '../../helpers/server.js';

/** The `bin/sigil.js` under test. */
export const BIN = resolve(process.env.SIGIL_TEST_BIN ?? SIGIL_BIN);
/** The package root of that build (where `sigil/client` resolves). */
export const BIN_ROOT = dirname(dirname(BIN));
/** This test's uid, the selector of the workloads' entries. */
export const UID = process.getuid?.() ?? 0;

/** A plain environment, as a unit file or a pod spec gives. */
export function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra };
}

/** Runs a one-shot `sigil args…` to its end. */
export function sigil(args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return runCommand(process.execPath, [BIN, ...args], { env: options.env ?? plainEnv(), timeoutMs: options.timeoutMs ?? 30_000 });
}

/** Starts a long-running `sigil args…`. */
export function supervise(args: readonly string[], env: NodeJS.ProcessEnv = plainEnv()): Daemon {
  return new Daemon(process.execPath, [BIN, ...args], env);
}

/** A TCP port nothing listens on right now (for a server that must come back on the same one). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/**
 * Waits until the child has logged `re` at least `n` times — it outlived that many failed
 * attempts — and has been up for at least `minMs`; fails if it ended meanwhile.
 */
export async function stillWaiting(d: Daemon, re: RegExp, n: number, minMs: number, timeoutMs = 60_000): Promise<void> {
  const since = Date.now();
  await d.until(`${n} lines matching ${re} and ${minMs} ms up`, () => d.count(re) >= n && Date.now() - since >= minMs, timeoutMs);
  if (!d.running) throw new Error(`the child ended while waiting: ${d.output.slice(-3000)}`);
}

/** Files in `dir` (sorted), none when it does not exist. */
export function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** A `sigil server run` folder: KEK, config, data dir, admin socket; the agent API on a fixed port. */
export interface ServerHome {
  readonly dir: string;
  readonly config: string;
  readonly port: number;
  readonly adminSocket: string;
  readonly dataDir: string;
  /** Starts `sigil server run` on this folder and waits until it serves. */
  start(): Promise<Daemon>;
  /** `sigil <args> --config <this config>` (admin commands). */
  admin(args: readonly string[]): Promise<RunResult>;
}

/** Makes a server folder (nothing running yet); `extra` is YAML appended to its config. */
export async function serverHome(extra = ''): Promise<ServerHome> {
  const dir = await makeServerDir();
  const config = await writeServerConfig(dir, extra);
  const port = await freePort();
  const home: ServerHome = {
    dir,
    config,
    port,
    adminSocket: join(dir, 'admin.sock'),
    dataDir: join(dir, 'data'),
    async start() {
      const d = supervise(['server', 'run', '--config', config, '--agent-address', `127.0.0.1:${port}`]);
      await d.until('the server to serve', () => d.stderr.includes('sigil server: serving'), 60_000);
      return d;
    },
    admin: (args) => sigil([...args, '--config', config]),
  };
  return home;
}

/** An agent folder for `sigil agent run`: bootstrap bundle, join token (0600), config, a socket path reachable by every user. */
export interface AgentHome {
  readonly dir: string;
  readonly config: string;
  readonly socket: string;
  readonly dataDir: string;
  readonly agentId: string;
  readonly token: string;
  start(): Daemon;
}

/**
 * Makes an agent folder for `server` (running now: it creates the join token and gives the
 * bundle). The agent retries fast (100 ms doubling to 1 s), so waiting shows within seconds.
 */
export async function agentHome(server: ServerHome): Promise<AgentHome> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-proc-agent-'));
  chmodSync(dir, 0o755);
  const bundle = await server.admin(['bundle', 'show']);
  if (bundle.code !== 0) throw new Error(`bundle show: ${bundle.stderr}`);
  writeFileSync(join(dir, 'bootstrap.pem'), bundle.stdout);
  const tok = await server.admin(['token', 'generate', '--ttl', '10m', '--output', 'json']);
  if (tok.code !== 0) throw new Error(`token generate: ${tok.stderr}`);
  const { token, agentId } = (JSON.parse(tok.stdout) as { joinToken: { token: string; agentId: string } }).joinToken;
  writeFileSync(join(dir, 'join-token'), `${token}\n`, { mode: 0o600 });
  const socket = join(dir, 'agent.sock');
  const config = join(dir, 'agent.yaml');
  writeFileSync(
    config,
    `trustDomain: example.org\nserverAddress: 127.0.0.1:${server.port}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${socket}\n` +
      `nodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\nsync:\n  retryInitial: 100ms\n  retryMax: 1s\n`,
  );
  return { dir, config, socket, dataDir: join(dir, 'data'), agentId, token, start: () => supervise(['agent', 'run', '--config', config]) };
}
