/**
 * One process of benchmark 10's simulated agents: several agents built on the agent's own
 * server client (src/agent/server-client.ts), each with its own channel (its own TLS
 * connection): attest with a join token over TLS, then mTLS with the agent SVID, one
 * SyncEntries stream, and BatchNewX509SVID for every entry it is given. Workload keys come
 * from a small pool of CSRs (the server's work is the same; the driver machine is spared
 * thousands of key generations). Failed calls are counted and retried with a jittered delay,
 * as the real agent does. Reports each agent's all-synced time and every late entry's SVID.
 */
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { generateKeyAndCsr } from '../../src/agent/csr.js';
import { AgentServerClient, type WireSyncPage } from '../../src/agent/server-client.js';
import { isSigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { makeCsrs } from './csr.js';

/** The driver's command: start these agents. */
export interface FleetAgentsCommand {
  readonly type: 'start';
  readonly target: string;
  readonly roots: readonly string[];
  readonly trustDomain: string;
  readonly agents: readonly { readonly token: string; readonly agentId: string }[];
  /** Agents attaching at once in this process. */
  readonly concurrency: number;
}

/** What the process reports. */
export type FleetAgentsReport =
  | { readonly type: 'synced'; readonly agentId: string; readonly atMs: number; readonly svids: number }
  | { readonly type: 'svid'; readonly agentId: string; readonly entryId: string; readonly atMs: number }
  | { readonly type: 'failure'; readonly agentId: string; readonly call: string; readonly error: string }
  /** A call the server refused at once because its signing backlog would outlast the call's deadline (retried, as a real agent does). */
  | { readonly type: 'shed'; readonly agentId: string; readonly call: string }
  | { readonly type: 'error'; readonly error: string };

function report(r: FleetAgentsReport): void {
  process.send?.(r);
}

const CSRS = makeCsrs(16);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const retryDelay = (attempt: number): number => Math.min(5000, 200 * 2 ** attempt) * (0.5 + Math.random());

/** One simulated agent; resolves once it is synced (it keeps its stream open afterwards). */
async function runAgent(cmd: FleetAgentsCommand, a: { token: string; agentId: string }): Promise<void> {
  const roots = cmd.roots.map((r) => Buffer.from(r, 'base64'));
  const client = new AgentServerClient({ addresses: [cmd.target], trustDomain: TrustDomain.parse(cmd.trustDomain), roots });
  const key = await generateKeyAndCsr();
  const attestor = new JoinTokenAgentAttestor(new Secret(a.token));
  for (let attempt = 0; ; attempt++) {
    try {
      const out = await client.attest(attestor, key.csrDer);
      client.setIdentity({ chainDer: out.svid.cert_chain, keyPkcs8Der: key.keyPkcs8Der });
      break;
    } catch (err) {
      report({ type: 'failure', agentId: a.agentId, call: 'AttestAgent', error: String(err) });
      await sleep(retryDelay(attempt));
    }
  }
  const entries = new Set<string>();
  const svids = new Set<string>();
  let synced = false;
  let fetching = false;
  let resolveSynced: () => void = () => undefined;
  const done = new Promise<void>((r) => {
    resolveSynced = r;
  });
  const fetchMissing = async (): Promise<void> => {
    if (fetching) return;
    fetching = true;
    try {
      for (let attempt = 0; ; attempt++) {
        const missing = [...entries].filter((id) => !svids.has(id));
        if (missing.length === 0) break;
        try {
          const results = await client.batchNewX509Svid(missing.map((entryId, i) => ({ entryId, csrDer: (CSRS[i % CSRS.length] as { der: Buffer }).der })));
          for (const r of results) {
            if ('svid' in r && r.svid !== undefined) {
              svids.add(r.entryId);
              if (synced) report({ type: 'svid', agentId: a.agentId, entryId: r.entryId, atMs: Date.now() });
            } else report({ type: 'failure', agentId: a.agentId, call: 'BatchNewX509SVID item', error: String(r.error) });
          }
        } catch (err) {
          if (isSigilError(err, 'ERR_UNAVAILABLE') && err.reason === 'signing-overloaded') report({ type: 'shed', agentId: a.agentId, call: 'BatchNewX509SVID' });
          else report({ type: 'failure', agentId: a.agentId, call: 'BatchNewX509SVID', error: String(err) });
          await sleep(retryDelay(attempt));
        }
      }
    } finally {
      fetching = false;
    }
    if (!synced) {
      synced = true;
      report({ type: 'synced', agentId: a.agentId, atMs: Date.now(), svids: svids.size });
      resolveSynced();
    }
    // entries that arrived while this round ran
    if ([...entries].some((id) => !svids.has(id))) void fetchMissing();
  };
  const open = (attempt: number): void => {
    const stream = client.syncEntries(500);
    let complete = false;
    stream.on('data', (page: WireSyncPage) => {
      for (const e of page.entries) entries.add(e.id);
      for (const id of page.deleted_entry_ids) entries.delete(id);
      if (page.batch_complete) {
        complete = true;
        void fetchMissing();
      }
    });
    stream.on('error', (err: unknown) => {
      report({ type: 'failure', agentId: a.agentId, call: 'SyncEntries', error: String(err) });
      setTimeout(() => open(complete ? 0 : attempt + 1), retryDelay(attempt));
    });
  };
  open(0);
  await done;
}

process.on('message', (m) => {
  const cmd = m as FleetAgentsCommand;
  if (cmd.type !== 'start') return;
  void (async () => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cmd.agents.length) {
        const a = cmd.agents[next++] as { token: string; agentId: string };
        await runAgent(cmd, a);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, cmd.concurrency) }, () => worker()));
  })().catch((err: unknown) => report({ type: 'error', error: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));
