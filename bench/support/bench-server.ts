/**
 * A real Sigil server in this process for benchmarks 2, 6 and 7, as `sigil server run`
 * would start it (SQLite file, disk key manager with a KEK, audit log file, agent API over
 * TLS on 127.0.0.1 port 0, admin API on a Unix socket), with the system clock so its timers
 * (sync pushes, rotation) run for real. Also attests a bench agent through a join token.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKekFile } from '../../src/ca/key-manager/kek.js';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { Secret } from '../../src/common/secret.js';
import { AdminClient } from '../../src/cli/commands/admin-client.js';
import { resolveServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { attest, type AgentIdentity } from '../../test/helpers/agent-client.js';
import { BENCH_TRUST_DOMAIN } from './ca.js';

/** A running bench server. */
export interface BenchServer {
  readonly server: RunningServer;
  readonly dir: string;
  readonly admin: AdminClient;
  /** `127.0.0.1:<port>` of the agent API. */
  readonly agentTarget: string;
  /** A fresh join token (secret). */
  joinToken(): Promise<{ token: Secret<string>; agentId: string }>;
  /** Attests a new agent with a join token over the real agent API. */
  attestAgent(): Promise<AgentIdentity>;
  close(): Promise<void>;
}

/** Starts a server on a fresh temp dir (or `dir`, to reuse a datastore); `extra` adds config keys (serverId, datastore, ca). */
export async function startBenchServer(options: { dir?: string; extra?: Record<string, unknown> } = {}): Promise<BenchServer> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'sigil-bench-server-')));
  if (options.dir === undefined) await generateKekFile(join(dir, 'kek'));
  const config = resolveServerConfig(
    {
      trustDomain: BENCH_TRUST_DOMAIN,
      dataDir: join(dir, 'data'),
      logLevel: 'warn',
      agentApi: { address: '127.0.0.1:0' },
      adminApi: { socketPath: join(dir, 'admin.sock') },
      keyManager: { type: 'disk', kekFile: join(dir, 'kek') },
      ...options.extra,
    },
    {},
    dir,
  );
  const server = await startServer(config, { clock: systemClock, logger: silentLogger() });
  const admin = new AdminClient(server.adminSocketPath);
  const agentTarget = `127.0.0.1:${server.agentAddress.port}`;
  const joinToken = async (): Promise<{ token: Secret<string>; agentId: string }> => {
    const r = await admin.call<{ token: string; agent_id: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: 600 });
    return { token: new Secret(r.token), agentId: r.agent_id };
  };
  return {
    server,
    dir,
    admin,
    agentTarget,
    joinToken,
    async attestAgent() {
      const { token } = await joinToken();
      return attest(agentTarget, server.x509Authorities(), BENCH_TRUST_DOMAIN, new JoinTokenAgentAttestor(token));
    },
    async close() {
      admin.close();
      await server.stop();
      if (options.dir === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}
