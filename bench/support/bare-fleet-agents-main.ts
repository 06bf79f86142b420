/**
 * One process of bare agents for benchmark 10's transport floor: per agent, the calls the
 * simulated agents make, with raw grpc-js clients and nothing of Sigil: a TLS connection with one
 * AttestAgent exchange, then a mutual-TLS connection with SyncEntries (kept open) and one
 * BatchNewX509SVID for the agent's entries.
 */
import { credentials, Metadata, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { serviceClient } from '../../src/grpc/proto.js';
import type { BareFleetAgentsCommand, BareFleetAgentsReport } from './bare-fleet-wire.js';

type Rpc = {
  AttestAgent(md: Metadata): ClientDuplexStream<unknown, unknown>;
  SyncEntries(req: object, md: Metadata): ClientReadableStream<{ batch_complete: boolean }>;
  BatchNewX509SVID(req: object, md: Metadata, cb: (err: Error | null, res?: { results: unknown[] }) => void): void;
  close(): void;
};

function report(r: BareFleetAgentsReport): void {
  process.send?.(r);
}

const OPTIONS = { 'grpc.ssl_target_name_override': 'sigil-server', 'grpc.max_receive_message_length': 8 * 1024 * 1024 };
const open: Rpc[] = [];

async function oneAgent(cmd: BareFleetAgentsCommand): Promise<void> {
  const Ctor = serviceClient('sigil/agent/v1/agent.proto', 'sigil.agent.v1.Agent');
  const ca = Buffer.from(cmd.tls.certPem);
  const csr = Buffer.from(cmd.csr, 'base64');
  const first = new Ctor(cmd.tlsTarget, credentials.createSsl(ca), OPTIONS) as unknown as Rpc;
  await new Promise<void>((resolve, reject) => {
    const call = first.AttestAgent(new Metadata());
    call.once('data', () => resolve());
    call.on('error', reject);
    call.write({ params: { attestor: 'join_token', payload: Buffer.alloc(32, 1), csr } });
    call.end();
  });
  first.close();
  const second = new Ctor(cmd.mtlsTarget, credentials.createSsl(ca, Buffer.from(cmd.tls.keyPem), ca), OPTIONS) as unknown as Rpc;
  open.push(second);
  await new Promise<void>((resolve, reject) => {
    const sync = second.SyncEntries({ page_size: 500 }, new Metadata());
    sync.on('data', (p) => {
      if (p.batch_complete) resolve();
    });
    sync.on('error', reject);
  });
  await new Promise<void>((resolve, reject) =>
    second.BatchNewX509SVID({ params: cmd.entryIds.map((entry_id) => ({ entry_id, csr })) }, new Metadata(), (err) => (err === null ? resolve() : reject(err))),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One agent, from the start again after a failure (the bare server's accept queue is grpc-js's default: a burst overflows it), as a real agent retries. */
async function agentWithRetries(cmd: BareFleetAgentsCommand): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await oneAgent(cmd);
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(Math.min(5000, 200 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}

process.on('message', (m) => {
  const cmd = m as BareFleetAgentsCommand;
  void Promise.all(Array.from({ length: cmd.agents }, () => agentWithRetries(cmd))).then(
    () => report({ type: 'done' }),
    (err: unknown) => report({ type: 'error', error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => {
  for (const c of open) c.close();
  process.exit(0);
});
