/**
 * Benchmark 9 (issue 14): cross-server propagation. Two servers in two processes with two data
 * dirs and two KEKs on one fresh PostgreSQL schema (dropped at the end), an agent of server B
 * and an agent of server A, each in a process of its own. Per sample, a waiting workload (its
 * own uid, denied until its entry exists) on B's agent, and its entry created through A's admin
 * socket: the time runs until the workload holds its SVID (A writes, PostgreSQL NOTIFY wakes B,
 * B reads the event log and pushes to its agent, the agent signs through B). The floor, measured
 * in the same run and interleaved with it: the same with the workload on A's own agent (the
 * single-server path, on the same database).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { AdminClient } from '../src/cli/commands/admin-client.js';
import { Secret } from '../src/common/secret.js';
import { AgentProcess, type AgentHost } from './support/bench-agent.js';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import type { PgServerReply } from './support/pg-server-main.js';
import { millis, percentile, type Benchmark, type BenchOutcome } from './support/result.js';
import { RETRY_MS } from './support/waiting-workload-main.js';
import { waitingWorkloadLatency } from './support/waiting-workload.js';

const P99_TARGET_MS = 500;
const FIRST_UID = 42_000;
const HERE = dirname(fileURLToPath(import.meta.url));
const URL = process.env['SIGIL_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A server child and the host view its agents need. */
interface ServerChild extends AgentHost {
  readonly child: ChildProcess;
  readonly admin: AdminClient;
  stop(): Promise<void>;
}

async function startServerChild(serverId: string, schema: string): Promise<ServerChild> {
  const child = fork(join(HERE, 'support', 'pg-server-main.js'), [serverId, URL, schema], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<Extract<PgServerReply, { type: 'ready' }>>((resolve, reject) => {
    child.once('message', (m) => {
      const r = m as PgServerReply;
      if (r.type === 'ready') resolve(r);
      else reject(new Error(`server ${serverId}: ${r.type === 'error' ? r.error : r.type}`));
    });
    child.once('exit', (code) => reject(new Error(`server ${serverId} exited with ${code}`)));
  });
  const admin = new AdminClient(ready.adminSocket);
  const roots = ready.roots.map((b) => Buffer.from(b, 'base64'));
  return {
    child,
    admin,
    agentTarget: ready.target,
    server: { x509Authorities: () => roots },
    async joinToken() {
      const r = await admin.call<{ token: string; agent_id: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: 600 });
      return { token: new Secret(r.token), agentId: r.agent_id };
    },
    async stop() {
      admin.close();
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.send({ type: 'stop' });
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      child.kill('SIGKILL');
    },
  };
}

async function createEntry(admin: AdminClient, spiffeId: string, parentId: string, uid: number): Promise<void> {
  const r = await admin.call<{ results: { status: { code: number; message: string } }[] }>('Entries', 'BatchCreateEntry', {
    entries: [{ spiffe_id: spiffeId, parent_id: parentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] }],
  });
  const status = r.results[0]?.status;
  if (status === undefined || status.code !== 0) throw new Error(`entry create failed: ${status?.message ?? 'no result'}`);
}

const crossServer: Benchmark = {
  id: 9,
  name: 'cross-server propagation',
  async run(options, log): Promise<BenchOutcome> {
    const n = options.quick ? 10 : 100;
    const schema = `sigil_bench9_${process.pid}_${randomBytes(3).toString('hex')}`;
    const servers: ServerChild[] = [];
    const agents: AgentProcess[] = [];
    try {
      const a = await startServerChild('bench-a', schema);
      servers.push(a);
      const b = await startServerChild('bench-b', schema);
      servers.push(b);
      const agentA = await AgentProcess.start(a);
      agents.push(agentA);
      const agentB = await AgentProcess.start(b);
      agents.push(agentB);
      const cross: number[] = [];
      const floor: number[] = [];
      for (let i = 0; i < n; i++) {
        // interleaved so that both series see the same machine load
        const uidA = FIRST_UID + 2 * i;
        const uidB = uidA + 1;
        floor.push(await waitingWorkloadLatency(agentA.address, uidA, () => createEntry(a.admin, `spiffe://${BENCH_TRUST_DOMAIN}/same/${i}`, agentA.agentId, uidA)));
        cross.push(await waitingWorkloadLatency(agentB.address, uidB, () => createEntry(a.admin, `spiffe://${BENCH_TRUST_DOMAIN}/cross/${i}`, agentB.agentId, uidB)));
        if ((i + 1) % 10 === 0) log(`${i + 1}/${n}: cross p50 ${percentile(cross, 50).toFixed(0)} ms (max ${Math.max(...cross).toFixed(0)}), same-server p50 ${percentile(floor, 50).toFixed(0)} ms`);
      }
      const row = (p: number): BenchOutcome['rows'][number] => {
        const figure = percentile(cross, p);
        const base = percentile(floor, p);
        return {
          bench: 9,
          what: `entry create on server A -> waiting workload on an agent of server B has SVID, p${p} (${n} entries)`,
          figure: millis(figure),
          floor: millis(base, 'same server'),
          ratio: figure / base,
          target: p === 99 ? `<= ${P99_TARGET_MS} ms` : '(no target)',
          met: p === 99 ? figure <= P99_TARGET_MS : null,
        };
      };
      return {
        rows: [row(50), row(99)],
        details: { entries: n, schema, crossMs: cross, sameServerMs: floor, retryMs: RETRY_MS },
        notes: [
          'two servers in two processes on one PostgreSQL schema; the floor is the same chain with the workload on an agent of server A (where the entry is created), interleaved sample by sample; the target is absolute',
          `the waiting workload re-asks every ${RETRY_MS} ms after PermissionDenied, so up to ${RETRY_MS} ms of each figure is its polling`,
        ],
      };
    } finally {
      for (const ag of agents) await ag.stop();
      for (const s of servers) await s.stop();
      const c = new pg.Client({ connectionString: URL, connectionTimeoutMillis: 3000 });
      try {
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } catch {
        // no database: the run failed before creating anything worth dropping
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  },
};

export default crossServer;
